-- Pause an agent for every worker: no turn of it starts until it is resumed (a running turn
-- finishes). What Client.pause does.
-- KEYS[1] the agent's state hash
-- Returns 1.
redis.call('HSET', KEYS[1], 'paused', 1)
return 1
