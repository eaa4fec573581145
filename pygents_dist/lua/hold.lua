-- Hold an agent while a failed turn waits for its retry backoff, fenced by the owner lease.
-- The failed entry stays pending in the agent's stream (with the entries read after it), so
-- when the hold ends the next owner claims them first, in order: the retry keeps its place
-- and later turns wait. The hold is the agent's 'paused' flag set to 'retry' (a pause by a
-- user is kept: then resume lets it go) and a '!hold' timer that move_due.lua ends.
-- KEYS[1] owner, KEYS[2] state, KEYS[3] timers, KEYS[4] due index, KEYS[5] turns stream,
-- KEYS[6] ready stream
-- ARGV[1] owner value, ARGV[2] backoff ms, ARGV[3] the agent's name,
-- ARGV[4] the retry record (msgpack {turn id, next attempt}), ARGV[5] the failed entry's id,
-- ARGV[6] group, ARGV[7] consumer, ARGV[8] ready stream cap
-- Wakes the timer loops (a ready signal with field 't') when the hold ends before anything
-- else waiting.
-- Returns 1 when held, 0 when the lease is no longer ours (nothing written).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('HSETNX', KEYS[2], 'paused', 'retry')
redis.call('HSET', KEYS[2], 'retry', ARGV[4])
local due = now + tonumber(ARGV[2])
local before = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
if #before == 0 or due < tonumber(before[2]) then
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[8], '*', 't', due)
end
redis.call('ZADD', KEYS[3], due, '!hold')
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
redis.call('ZADD', KEYS[4], first[2], ARGV[3])
-- A retry is not a redelivery: its delivery count starts again (JUSTID counts nothing), so
-- attempts are limited by the retry spec, not by max_deliveries.
redis.call('XCLAIM', KEYS[5], ARGV[6], ARGV[7], 0, ARGV[5], 'RETRYCOUNT', 0, 'JUSTID')
return 1
