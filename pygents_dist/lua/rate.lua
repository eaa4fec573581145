-- Take a slot of a rate-limited tool (GCRA), in one call: exact however many workers ask.
-- The key holds the theoretical arrival time (TAT, Unix ms, fractional) of the next call;
-- a call is given the earliest moment at which the limit allows it and pushes the TAT one
-- interval on, so the caller only sleeps: it never asks again.
-- KEYS[1] the tool's rate key
-- ARGV[1] ms between calls (the period over the calls it allows; may be fractional),
-- ARGV[2] burst: calls allowed at once after an idle spell (>= 1)
-- Returns 0 (go now) or the whole ms to wait before the call (its slot is reserved).
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local wait = tat - (burst - 1) * interval - now
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', next_tat),
  'PX', math.ceil(next_tat - now) + 1)  -- past the TAT an absent key means the same
if wait <= 0 then return 0 end
return math.ceil(wait)
