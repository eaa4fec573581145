-- Take many agents at once, each with its first batch, in one round trip: the fast way in
-- for agents signalled together. Only the plain case is taken here; an agent that needs
-- more (entries a previous owner left pending, sends waiting in its outbox, a missing
-- group) is left alone and reported, for take.lua to handle on its own.
-- KEYS: per agent, 6 keys: turns stream, owner, state, outbox, done zset, cancel hash
-- ARGV[1] worker id (also the consumer name), ARGV[2] lease in ms, ARGV[3] group,
-- ARGV[4] batch size
-- Returns, per agent in KEYS order:
--   {1} owned by another worker, {2} paused, {3} idle, {4} needs take.lua (no lease taken)
--   {0, owner value, queue blob|false, pool blob|false, entries, flags}: lease taken, with
--     the first batch (flags as in fetch.lua)
-- #include flags.lua
local function take(turns, owner, state, outbox, done, cancel)
  if redis.call('EXISTS', owner) == 1 then return {1} end
  local st = redis.call('HMGET', state, 'paused', 'queue', 'pool')
  if st[1] then return {2} end
  if redis.call('XLEN', outbox) > 0 then return {4} end
  local ok, summary = pcall(redis.call, 'XPENDING', turns, ARGV[3])
  if not ok then  -- no stream, or no group yet
    if redis.call('XLEN', turns) == 0 then return {3} end
    return {4}
  end
  if summary[1] > 0 then return {4} end
  local res = redis.call('XREADGROUP', 'GROUP', ARGV[3], ARGV[1], 'COUNT', ARGV[4],
    'STREAMS', turns, '>')
  if not res then return {3} end
  local fence = redis.call('HINCRBY', state, 'fence', 1)
  local value = ARGV[1] .. ':' .. fence
  redis.call('SET', owner, value, 'PX', ARGV[2])
  local entries = res[1][2]
  return {0, value, st[2], st[3], entries, batch_flags(entries, done, cancel)}
end
local out = {}
for i = 1, #KEYS, 6 do
  out[#out + 1] = take(KEYS[i], KEYS[i + 1], KEYS[i + 2], KEYS[i + 3], KEYS[i + 4], KEYS[i + 5])
end
return out
