-- Take (or renew) one of a concurrency-limited tool's N slots, holders expiring like leases.
-- KEYS[1] the tool's holders (sorted set: token -> lease expiry, Unix ms)
-- ARGV[1] our token, ARGV[2] N (most holders at once), ARGV[3] lease ms,
-- ARGV[4] '1': renew only (fail if we no longer hold a slot)
-- Returns 1 when we hold a slot until now + lease, else 0. Holders whose lease ran out (a
-- crashed worker) are dropped first, so their slots come back after one lease.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not held then
  if ARGV[4] == '1' or redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])  -- the set goes with its last lease
return 1
