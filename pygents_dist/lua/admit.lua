-- Admit an instance taken for the first time under its kind's cap: count it in the kind's
-- index if there is room (or if it is there already).
-- KEYS[1] the kind's instance index; ARGV[1] the cap, ARGV[2] now (ms), ARGV[3] the name
-- Returns 1 admitted, 0 refused (the kind holds its cap; the index is left as it was).
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
return 1
