#!lua flags=allow-cross-slot-keys
-- send.lua for a Redis Cluster, where a script's KEYS share one slot: append turns to the
-- streams of agents of one slot and signal the agents nobody owns on a ready shard of this
-- same primary (another slot: named in ARGV, which the flag above allows), or, with no such
-- shard, return them for the caller to signal. What Client.send and send_many do on a cluster.
-- KEYS per agent: its turns stream and owner key
-- ARGV[1] a ready shard on this primary ('' for none), ARGV[2] ready stream cap, then per
--   agent: its name and how many turns follow, then per turn: id, envelope, signature
--   ('' for none)
-- The signal is written first: a shard that is not on this primary (moved meanwhile) fails
-- the call before anything is written, and the caller appends again without it.
-- A stream this call creates gets the workers' consumer group at id 0, as in send.lua.
-- Returns {1 if the agents were signalled here else 0, the names of the agents to wake}.
local wake, a = {}, 3
for k = 1, #KEYS, 2 do
  if redis.call('EXISTS', KEYS[k + 1]) == 0 then wake[#wake + 1] = ARGV[a] end
  a = a + 2 + 3 * tonumber(ARGV[a + 1])
end
local signalled = 0
if ARGV[1] ~= '' and #wake > 0 then
  redis.call('XADD', ARGV[1], 'MAXLEN', '~', ARGV[2], '*', 'as', table.concat(wake, ' '))
  signalled = 1
end
a = 3
for k = 1, #KEYS, 2 do
  local count = tonumber(ARGV[a + 1])
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
end
return {signalled, wake}
