-- Admit an instance taken for the first time under its kind's cap. The take's round trip
-- already added it to the kind's index (_instances.touch_calls), so it counts itself.
-- KEYS[1] the kind's instance index; ARGV[1] the cap, ARGV[2] the instance's name
-- Returns 1 admitted, 0 refused (it leaves the index again).
if redis.call('ZCARD', KEYS[1]) <= tonumber(ARGV[1]) then return 1 end
redis.call('ZREM', KEYS[1], ARGV[2])
return 0
