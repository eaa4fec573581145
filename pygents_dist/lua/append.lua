-- send.lua without the signal, for a Redis Cluster: append turns to agents' streams (all in
-- one slot) and return the agents nobody owns, whom the caller then signals on their ready
-- shards (which live in other slots). What Client.send and send_many do on a cluster.
-- KEYS per agent: its turns stream and owner key
-- ARGV per agent: its name and how many turns follow, then per turn: id, envelope,
--   signature ('' for none)
-- A stream this call creates gets the workers' consumer group at id 0, as in send.lua.
-- Returns the names of the agents to wake.
local wake, a = {}, 1
for k = 1, #KEYS, 2 do
  local name, count = ARGV[a], tonumber(ARGV[a + 1])
  local new = redis.call('EXISTS', KEYS[k]) == 0
  a = a + 2
  for _ = 1, count do
    if ARGV[a + 2] ~= '' then
      redis.call('XADD', KEYS[k], '*', 'id', ARGV[a], 'm', ARGV[a + 1], 's', ARGV[a + 2])
    else
      redis.call('XADD', KEYS[k], '*', 'id', ARGV[a], 'm', ARGV[a + 1])
    end
    a = a + 3
  end
  if new then redis.call('XGROUP', 'CREATE', KEYS[k], 'workers', '0') end
  if redis.call('EXISTS', KEYS[k + 1]) == 0 then wake[#wake + 1] = name end
end
return wake
