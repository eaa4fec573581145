-- Store a schedule (add, replace, pause or resume), with its next tick and index entry.
-- KEYS[1] the agent's schedules hash, KEYS[2] its ticks hash, KEYS[3] the schedule index,
-- KEYS[4] the ready stream
-- ARGV[1] name, ARGV[2] spec (msgpack), ARGV[3] next tick (Unix ms, '' when paused),
-- ARGV[4] the index member, ARGV[5] '1': keep what is stored if the spec is unchanged (a
-- worker declaring its module's schedules at start must not move a tick, nor resume a
-- schedule a user paused), ARGV[6] ready stream cap
-- A tick before every other wakes the workers' schedule loops (a ready signal, field 't').
-- Returns 1 when written, 0 when kept.
if ARGV[5] == '1' and redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[3], '+inf', ARGV[4])
else
  local before = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  if #before == 0 or tonumber(ARGV[3]) < tonumber(before[2]) then
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 't', ARGV[3])
  end
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
end
return 1
