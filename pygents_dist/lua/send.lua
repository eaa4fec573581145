-- Append turns to agents' streams and signal the agents nobody owns, in one call: what
-- Client.send and send_many do (plain XADDs work too; see README "Wire format").
-- A worker holding an agent's lease reads new turns itself before it lets the agent go
-- (fetch.lua gives the lease up only when the stream is empty, and every other way of
-- letting go checks the backlog afterwards), so a signal for it would only wake workers
-- for nothing.
-- KEYS[1] ready stream, then per agent: its turns stream and owner key
-- ARGV[1] ready stream cap, then per agent: its name and how many turns follow, then per
--   turn: id, envelope, signature ('' for none)
-- The agents to wake share one signal entry (field "as": their names, space-separated), so
-- a fan-out to thousands of agents writes one entry per call, not one per agent.
-- A stream this call creates gets the workers' consumer group (named as GROUP in _keys.py)
-- at id 0, so the first take of a new agent (an instance, say) reads it at once.
-- Returns how many agents were signalled.
local wake, a = {}, 2
for k = 2, #KEYS, 2 do
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
if #wake > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'as', table.concat(wake, ' '))
end
return #wake
