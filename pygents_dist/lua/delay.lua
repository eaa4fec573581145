-- Store delayed turns of one agent until they are due (what Client.send(delay_s=...) does).
-- KEYS[1] the agent's timers (sorted set: turn id -> due, Unix ms), KEYS[2] its timed hash
-- (turn id -> msgpack [envelope, signature]), KEYS[3] the shared due index (agent -> its
-- earliest due time), KEYS[4] the ready stream
-- ARGV[1] the agent's name, ARGV[2] ready stream cap, then per turn: id, due ('<Unix ms>', or
-- '+<ms>' from Redis's own clock, so clients with skewed clocks agree), envelope, signature
-- ('' for none)
-- A turn due before every other waiting turn wakes the workers' timer loops (a ready signal
-- with field 't'), which otherwise look only once a second.
-- Storing a turn id again replaces it (a retried call stores one turn).
-- Returns the due times (Unix ms), in order.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out, soonest = {}, nil
local before = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
for a = 3, #ARGV, 4 do
  local due = ARGV[a + 1]
  if string.sub(due, 1, 1) == '+' then
    due = now + tonumber(string.sub(due, 2))
  else
    due = tonumber(due)
  end
  redis.call('HSET', KEYS[2], ARGV[a], cmsgpack.pack({ARGV[a + 2], ARGV[a + 3]}))
  redis.call('ZADD', KEYS[1], due, ARGV[a])
  out[#out + 1] = due
  if soonest == nil or due < soonest then soonest = due end
end
if soonest ~= nil and (#before == 0 or soonest < tonumber(before[2])) then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[2], '*', 't', soonest)
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
redis.call('ZADD', KEYS[3], first[2], ARGV[1])
return out
