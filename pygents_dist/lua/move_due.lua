-- Move agents' due delayed turns into their streams, in due order, exactly once: each due
-- turn is appended and its timer and payload deleted in this one call, so a second worker
-- running it at the same moment finds nothing left. A due '!hold' (a retry's backoff) lets
-- the agent run again. Signals the agents as send.lua does (and always after a hold).
-- KEYS[1] ready stream, KEYS[2] due index, then per agent: timers, timed, turns stream,
-- owner, state
-- ARGV[1] ready stream cap, ARGV[2] most turns moved per agent, then per agent: its name
-- Returns per agent the turns moved (an agent with more due is left in the index, due now).
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local wake, out, k = {}, {}, 3
for i = 3, #ARGV do
  local name = ARGV[i]
  local timers, timed, turns, owner, state = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3],
    KEYS[k + 4]
  k = k + 5
  local due = redis.call('ZRANGEBYSCORE', timers, '-inf', now, 'LIMIT', 0, ARGV[2])
  local moved, resumed = 0, false
  if #due > 0 then
    local new = redis.call('EXISTS', turns) == 0
    for _, id in ipairs(due) do
      if id == '!hold' then
        if redis.call('HGET', state, 'paused') == 'retry' then
          redis.call('HDEL', state, 'paused')
          resumed = true
        end
      else
        local raw = redis.call('HGET', timed, id)
        if raw then
          local p = cmsgpack.unpack(raw)
          if p[2] ~= '' then
            redis.call('XADD', turns, '*', 'id', id, 'm', p[1], 's', p[2])
          else
            redis.call('XADD', turns, '*', 'id', id, 'm', p[1])
          end
          moved = moved + 1
        end
      end
    end
    redis.call('ZREM', timers, unpack(due))
    redis.call('HDEL', timed, unpack(due))
    if new and moved > 0 then redis.call('XGROUP', 'CREATE', turns, 'workers', '0') end
    if resumed or (moved > 0 and redis.call('EXISTS', owner) == 0) then
      wake[#wake + 1] = name
    end
  end
  local first = redis.call('ZRANGE', timers, 0, 0, 'WITHSCORES')
  if #first == 0 then
    redis.call('ZREM', KEYS[2], name)
  else
    redis.call('ZADD', KEYS[2], first[2], name)
  end
  out[#out + 1] = moved
end
if #wake > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'as', table.concat(wake, ' '))
end
return out
