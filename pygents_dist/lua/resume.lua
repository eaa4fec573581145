-- Let a paused agent run again, and wake the workers for it, owned or not (its owner may be
-- about to let it go without looking at its stream again). What Client.resume does.
-- KEYS[1] the agent's state hash, KEYS[2] the ready stream
-- ARGV[1] ready stream cap, ARGV[2] the agent's name
-- Returns 1.
redis.call('HDEL', KEYS[1], 'paused')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'as', ARGV[2])
return 1
