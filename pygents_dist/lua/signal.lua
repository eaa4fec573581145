-- Announce on the ready stream that agents have new turns, skipping agents that have an
-- owner: a worker holding an agent's lease reads new turns itself before it lets the agent
-- go (fetch.lua gives the lease up only when the stream is empty, and every other way of
-- letting go checks the backlog afterwards), so its signal would only wake workers for
-- nothing.
-- KEYS[1] ready stream, KEYS[2..] the agents' owner keys
-- ARGV[1] ready stream cap, ARGV[2..] the agents' names (in KEYS order)
-- Returns how many signals were written.
local written = 0
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'a', ARGV[i])
    written = written + 1
  end
end
return written
