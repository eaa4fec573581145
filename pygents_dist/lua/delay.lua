-- Store delayed turns of one agent until they are due (what Client.send(delay_s=...) does).
-- KEYS[1] the agent's timers (sorted set: turn id -> due, Unix ms), KEYS[2] its timed hash
-- (turn id -> msgpack [envelope, signature]), KEYS[3] the shared due index (agent -> its
-- earliest due time)
-- ARGV[1] the agent's name, then per turn: id, due ('<Unix ms>', or '+<ms>' from Redis's own
-- clock, so clients with skewed clocks agree), envelope, signature ('' for none)
-- Storing a turn id again replaces it (a retried call stores one turn).
-- Returns the due times (Unix ms), in order.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {}
for a = 2, #ARGV, 4 do
  local due = ARGV[a + 1]
  if string.sub(due, 1, 1) == '+' then
    due = now + tonumber(string.sub(due, 2))
  else
    due = tonumber(due)
  end
  redis.call('HSET', KEYS[2], ARGV[a], cmsgpack.pack({ARGV[a + 2], ARGV[a + 3]}))
  redis.call('ZADD', KEYS[1], due, ARGV[a])
  out[#out + 1] = due
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
redis.call('ZADD', KEYS[3], first[2], ARGV[1])
return out
