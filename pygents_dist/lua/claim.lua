-- Take over every pending entry of an agent's stream for the new owner, with delivery counts.
-- Only called by the worker that just acquired the agent's lease, so whoever had them is
-- dead or fenced out. KEYS[1] turns stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] count
-- Returns {entries, counts} (counts[i]: deliveries of entry i, this one included), or -3
-- if the group is missing.
local ok, pend = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[1], '-', '+', ARGV[3])
if not ok then return -3 end
local counts = {}
local ids = {}
for i, p in ipairs(pend) do
  ids[i] = p[1]
  counts[p[1]] = p[4] + 1
end
if #ids == 0 then return {{}, {}} end
local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(ids))
local out_counts = {}
local entries = {}
for _, e in ipairs(claimed) do
  if e[2] then
    entries[#entries + 1] = e
    out_counts[#out_counts + 1] = counts[e[1]]
  else
    redis.call('XACK', KEYS[1], ARGV[1], e[1])
  end
end
return {entries, out_counts}
