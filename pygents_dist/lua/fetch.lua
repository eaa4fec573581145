-- Read the next batch of an owned agent's turns, with dedup and cancel flags.
-- KEYS[1] turns stream, KEYS[2] owner, KEYS[3] state, KEYS[4] done zset, KEYS[5] cancel hash
-- ARGV[1] owner value, ARGV[2] group, ARGV[3] consumer, ARGV[4] count, ARGV[5] start id
--   ('>' for new entries, '0' for this consumer's pending ones); ARGV[6] '1': when there is
--   nothing new and the stream is empty (everything read was committed), give up the lease
--   and delete the empty stream
-- Returns {status, entries, flags}: status 0 ok, -1 lease lost, -2 paused, -3 no group;
-- {0, {}, {}, 1} when the lease was given up.
-- flags[i] is 'd' (turn already committed), 'c' (cancel requested) or '' for entry i.
-- #include flags.lua
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return {-1} end
if redis.call('HGET', KEYS[3], 'paused') then return {-2} end
-- Entries this consumer was handed but never committed come first: a fetch whose reply was
-- lost (a dropped connection, then the round trip sent again) delivered them unseen, and
-- reading on past them would run later turns before them. Normally there are none.
local start = ARGV[5]
if start == '>' then
  local ok, mine = pcall(redis.call, 'XPENDING', KEYS[1], ARGV[2], '-', '+', 1, ARGV[3])
  if ok and #mine > 0 then start = '0' end
end
local ok, res = pcall(redis.call, 'XREADGROUP', 'GROUP', ARGV[2], ARGV[3],
  'COUNT', ARGV[4], 'STREAMS', KEYS[1], start)
if not ok then return {-3} end
if not res then
  if ARGV[6] == '1' and redis.call('XLEN', KEYS[1]) == 0 then
    -- The empty stream goes too (its group is most of an idle agent's memory in Redis):
    -- send.lua makes it again, with the group, for the next turn.
    redis.call('DEL', KEYS[2], KEYS[1])
    return {0, {}, {}, 1}
  end
  return {0, {}, {}}
end
local entries = res[1][2]
local flags = batch_flags(entries, KEYS[4], KEYS[5])
return {0, entries, flags}
