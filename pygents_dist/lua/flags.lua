-- batch_flags(entries, done_key, cancel_key): per entry of an XREADGROUP reply, 'd' when its
-- turn id is already committed (in the done zset), 'c' when a cancel was requested, else ''.
-- Included by fetch.lua and take.lua where they say "#include flags.lua" (see _transport.py).
local function batch_flags(entries, done_key, cancel_key)
  local flags, tids, at = {}, {}, {}
  for i, entry in ipairs(entries) do
    local fields = entry[2]
    local tid = false
    flags[i] = ''
    if type(fields) == 'table' then
      for j = 1, #fields, 2 do
        if fields[j] == 'id' then tid = fields[j + 1] end
      end
    end
    if tid then
      tids[#tids + 1] = tid
      at[#tids] = i
    end
  end
  -- one call per 500 ids for each check (a call from a script costs more than its command)
  for i = 1, #tids, 500 do
    local j = math.min(i + 499, #tids)
    local done = redis.call('ZMSCORE', done_key, unpack(tids, i, j))
    local cancel = redis.call('HMGET', cancel_key, unpack(tids, i, j))
    for k = i, j do
      if done[k - i + 1] then flags[at[k]] = 'd'
      elseif cancel[k - i + 1] then flags[at[k]] = 'c' end
    end
  end
  return flags
end
