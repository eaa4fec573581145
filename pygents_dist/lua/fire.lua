-- Fire one tick of a schedule, exactly once however many workers try: compare-and-set on
-- the tick's time, the next tick and the turn appended in this one call. The worker computes
-- the next tick (cron in Python) and seals the turn, whose id is derived from the schedule's
-- name and tick time, so a turn sent twice would be dropped by id as well.
-- KEYS[1] the agent's ticks hash, KEYS[2] its schedules hash, KEYS[3] its turns stream,
-- KEYS[4] its owner, KEYS[5] ready stream, KEYS[6] the schedule index
-- ARGV[1] schedule name, ARGV[2] the tick the worker saw (Unix ms), ARGV[3] the next tick,
-- ARGV[4] '1' to append the turn ('0': a missed tick skipped), ARGV[5] the agent's name,
-- ARGV[6] ready cap, ARGV[7] turn id, ARGV[8] envelope, ARGV[9] signature, ARGV[10] the
-- index member
-- Returns 1 when this call fired (or skipped) the tick, 0 when another did or it is paused,
-- -1 when the schedule is gone.
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  redis.call('ZREM', KEYS[6], ARGV[10])
  return -1
end
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[10])
if ARGV[4] == '1' then
  local new = redis.call('EXISTS', KEYS[3]) == 0
  if ARGV[9] ~= '' then
    redis.call('XADD', KEYS[3], '*', 'id', ARGV[7], 'm', ARGV[8], 's', ARGV[9])
  else
    redis.call('XADD', KEYS[3], '*', 'id', ARGV[7], 'm', ARGV[8])
  end
  if new then redis.call('XGROUP', 'CREATE', KEYS[3], 'workers', '0') end
  if redis.call('EXISTS', KEYS[4]) == 0 then
    redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[6], '*', 'as', ARGV[5])
  end
end
return 1
