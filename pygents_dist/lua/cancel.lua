-- Ask the workers to cancel one turn: it will not start, or its task is cancelled where it
-- runs (the worker looks four times a second). What Client.cancel does.
-- KEYS[1] the agent's cancel hash, KEYS[2] its done zset
-- ARGV[1] the turn id
-- Returns 1 when the request was recorded, 0 when the turn already finished (its id is in
-- the done set, which keeps ids for the dedup window: 10 minutes by default).
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 1)
return 1
