-- Remove a schedule: its spec, next tick and index entry.
-- KEYS[1] the agent's schedules hash, KEYS[2] its ticks hash, KEYS[3] the schedule index
-- ARGV[1] name, ARGV[2] the index member
-- Returns 1 when it existed, else 0.
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
return redis.call('HDEL', KEYS[1], ARGV[1])
