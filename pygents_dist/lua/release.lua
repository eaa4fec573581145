-- Give up a lease (agent ownership or lock) only if it is still ours.
-- KEYS[1] lease key; ARGV[1] our value. Returns 1 if released, 0 if someone else holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
