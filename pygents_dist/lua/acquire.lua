-- Take ownership of an agent (actor lease) with a new fencing token.
-- KEYS[1] owner key, KEYS[2] state hash
-- ARGV[1] worker id, ARGV[2] lease in ms
-- Returns {owner_value, queue_blob|false, pool_blob|false, paused|false} or false if owned.
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local fence = redis.call('HINCRBY', KEYS[2], 'fence', 1)
local value = ARGV[1] .. ':' .. fence
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
local st = redis.call('HMGET', KEYS[2], 'queue', 'pool', 'paused')
return {value, st[1], st[2], st[3]}
