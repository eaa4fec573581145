-- Take an agent that has work, in one round trip: the lease with a new fencing token, its
-- context, every entry a previous owner left pending (claimed, with delivery counts), and the
-- first batch to run. Does nothing (takes no lease) when the agent is owned, paused or idle.
-- KEYS[1] turns stream, KEYS[2] owner, KEYS[3] state, KEYS[4] outbox, KEYS[5] done zset,
-- KEYS[6] cancel hash
-- ARGV[1] worker id (also the consumer name), ARGV[2] lease in ms, ARGV[3] group,
-- ARGV[4] batch size, ARGV[5] most pending entries to claim, ARGV[6] batch size for claimed
-- entries (the worker runs them one per commit)
-- Returns {status, ...}:
--   {1} owned by another worker, {2} paused, {3} idle (nothing to run or relay)
--   {-3, owner value, queue blob|false, pool blob|false, outbox length}: lease taken, but the
--     stream has no group (Redis lost its data)
--   {0, owner value, queue blob|false, pool blob|false, outbox length, claimed ids, delivery
--     counts, entries, flags, pending}: lease taken. entries is the first batch: this
--     consumer's claimed pending entries when pending is 1, else new ones; flags as in
--     fetch.lua ('d' committed before, 'c' cancel requested, '' otherwise).
-- #include flags.lua
if redis.call('EXISTS', KEYS[2]) == 1 then return {1} end
if redis.call('HEXISTS', KEYS[3], 'paused') == 1 then return {2} end
local outbox = redis.call('XLEN', KEYS[4])
if outbox == 0 and redis.call('XLEN', KEYS[1]) == 0 then return {3} end
local fence = redis.call('HINCRBY', KEYS[3], 'fence', 1)
local value = ARGV[1] .. ':' .. fence
redis.call('SET', KEYS[2], value, 'PX', ARGV[2])
local st = redis.call('HMGET', KEYS[3], 'queue', 'pool')
local ok, pend = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[3], '-', '+', ARGV[5])
if not ok then return {-3, value, st[1], st[2], outbox} end
-- claim: whoever had these entries is dead or fenced out. Reading an entry
-- counts a delivery, taking it over does not (RETRYCOUNT keeps its count); consumers left
-- with nothing pending (dead workers) are deleted, so restarts do not pile them up.
local ids, counts = {}, {}
for _, p in ipairs(pend) do
  local e = redis.call('XCLAIM', KEYS[1], ARGV[3], ARGV[1], 0, p[1], 'RETRYCOUNT', p[4])[1]
  if e and e[2] then
    ids[#ids + 1] = e[1]
    counts[#counts + 1] = p[4] + 1
  else
    redis.call('XACK', KEYS[1], ARGV[3], p[1])
  end
end
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[3])) do
  local name, held
  for j = 1, #c, 2 do
    if c[j] == 'name' then name = c[j + 1] elseif c[j] == 'pending' then held = c[j + 1] end
  end
  if held == 0 and name ~= ARGV[1] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[3], name)
  end
end
local pending, start, count = 0, '>', ARGV[4]
if #ids > 0 then
  pending, start, count = 1, '0', ARGV[6]
end
local res = redis.call('XREADGROUP', 'GROUP', ARGV[3], ARGV[1], 'COUNT', count,
  'STREAMS', KEYS[1], start)
local entries = {}
if res then entries = res[1][2] end
local flags = batch_flags(entries, KEYS[5], KEYS[6])
return {0, value, st[1], st[2], outbox, ids, counts, entries, flags, pending}
