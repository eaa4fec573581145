-- Cancel a delayed turn that is not yet due (moved turns are cancelled with cancel.lua).
-- KEYS[1] the agent's timers, KEYS[2] its timed hash, KEYS[3] the due index
-- ARGV[1] the agent's name, ARGV[2] the turn id
-- Returns 1 when the turn was waiting (it never runs), 0 when it was not (already moved to
-- the agent's stream, cancelled before, or never delayed).
if ARGV[2] == '!hold' or redis.call('ZREM', KEYS[1], ARGV[2]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #first == 0 then
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('ZADD', KEYS[3], first[2], ARGV[1])
end
return 1
