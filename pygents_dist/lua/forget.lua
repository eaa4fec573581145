-- Forget an agent: delete its stream, state (context, fence), outbox, dedup set and cancel
-- flags, unless a worker holds it or (without force) turns wait in its stream.
-- KEYS[1] turns stream, KEYS[2] owner, KEYS[3] state, KEYS[4] outbox, KEYS[5] done zset,
-- KEYS[6] cancel hash
-- ARGV[1] '1' to forget it even with turns waiting (they are dropped)
-- Returns 1 forgotten, 0 a worker holds it now, -1 turns or sends wait (nothing deleted).
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if ARGV[1] ~= '1' and (redis.call('XLEN', KEYS[1]) > 0 or redis.call('XLEN', KEYS[4]) > 0) then
  return -1
end
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return 1
