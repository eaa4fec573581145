-- Commit a batch of an agent's turns atomically, fenced by the owner lease.
-- KEYS[1] turns stream, KEYS[2] owner, KEYS[3] state, KEYS[4] outbox, KEYS[5] done zset,
-- KEYS[6] cancel hash, KEYS[7..] reply streams (referenced by index from ARGV)
-- ARGV[1] owner value, ARGV[2] msgpack map:
--   g group, now ms, win dedup window ms, ack [entry ids], tid [turn ids],
--   fu [[id, m, s]] follow-up turns, ob [[agent, id, m, s]] sends to other agents,
--   st {queue=blob, pool=blob} changed context, rp [[key index, kind, seq, data]],
--   rttl reply ttl ms, rmax reply stream cap
-- Returns 1 when committed (or already committed), 0 when the lease is no longer ours
-- (nothing written).
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
local ops = cmsgpack.unpack(ARGV[2])
-- A client library may resend this script after a dropped connection although it ran:
-- the batch's first turn id already marked done means it did, so apply nothing twice.
if #ops.tid > 0 and redis.call('ZSCORE', KEYS[5], ops.tid[1]) then return 1 end
-- many ids per call (a call from a script costs more than its command), 500 at a time
local ack, tid = ops.ack, ops.tid
for i = 1, #ack, 500 do
  local j = math.min(i + 499, #ack)
  redis.call('XACK', KEYS[1], ops.g, unpack(ack, i, j))
  redis.call('XDEL', KEYS[1], unpack(ack, i, j))
end
for i = 1, #tid, 500 do
  local j = math.min(i + 499, #tid)
  local scored = {}
  for k = i, j do
    scored[#scored + 1] = ops.now
    scored[#scored + 1] = tid[k]
  end
  redis.call('ZADD', KEYS[5], unpack(scored))
  redis.call('HDEL', KEYS[6], unpack(tid, i, j))
end
if #ops.tid > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', ops.now - ops.win)
  redis.call('PEXPIRE', KEYS[5], ops.win)  -- an agent gone idle keeps no ids past the window
end
for _, f in ipairs(ops.fu) do
  if f[3] ~= '' then
    redis.call('XADD', KEYS[1], '*', 'id', f[1], 'm', f[2], 's', f[3])
  else
    redis.call('XADD', KEYS[1], '*', 'id', f[1], 'm', f[2])
  end
end
for _, o in ipairs(ops.ob) do
  redis.call('XADD', KEYS[4], '*', 'a', o[1], 'id', o[2], 'm', o[3], 's', o[4])
end
if ops.st.queue then redis.call('HSET', KEYS[3], 'queue', ops.st.queue) end
if ops.st.pool then redis.call('HSET', KEYS[3], 'pool', ops.st.pool) end
for _, r in ipairs(ops.rp) do
  local key = KEYS[6 + r[1]]
  redis.call('XADD', key, 'MAXLEN', '~', ops.rmax, '*', 'k', r[2], 'q', r[3], 'd', r[4])
  redis.call('PEXPIRE', key, ops.rttl)
end
return 1
