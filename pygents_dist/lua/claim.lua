-- Take over every pending entry of an agent's stream for the new owner, with delivery counts.
-- Only called by the worker that just acquired the agent's lease, so whoever had them is
-- dead or fenced out. KEYS[1] turns stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] count
-- Returns {entries, counts} (counts[i]: deliveries of entry i, the coming one included), or
-- -3 if the group is missing.
-- Reading an entry (new or pending) counts a delivery; taking it over does not (RETRYCOUNT
-- keeps its count), and taken-over entries run one per commit, so only a turn that was
-- actually running when workers died is charged, not the turns queued behind it. Consumers
-- left with nothing pending (dead workers) are deleted, so restarts do not pile them up.
local ok, pend = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[3])
if not ok then return -3 end
local out_counts = {}
local entries = {}
for _, p in ipairs(pend) do
  local e = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, p[1], 'RETRYCOUNT', p[4])[1]
  if e and e[2] then
    entries[#entries + 1] = e
    out_counts[#out_counts + 1] = p[4] + 1
  else
    redis.call('XACK', KEYS[1], ARGV[1], p[1])
  end
end
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local name, pending
  for j = 1, #c, 2 do
    if c[j] == 'name' then name = c[j + 1] elseif c[j] == 'pending' then pending = c[j + 1] end
  end
  if pending == 0 and name ~= ARGV[2] then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
  end
end
return {entries, out_counts}
