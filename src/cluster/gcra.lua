-- GCRA (generic cell rate algorithm), the algorithm of the in-memory limiter (governor),
-- in one atomic step. Times are microseconds of the Redis server's clock, which every
-- instance shares, so clock skew between instances cannot widen a budget.
--
-- KEYS[1]  the bucket: holds its theoretical arrival time (TAT) and expires when full again
-- ARGV[1]  emission interval T: the time one request's worth of budget takes to come back
-- ARGV[2]  tolerance tau = T * (burst - 1)
--
-- Returns {1, remaining} when the request is allowed, {0, wait} when it is not: `remaining`
-- as governor counts it, `wait` the microseconds until one request would be allowed.
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local earliest = tat - tau
if now < earliest then
  return {0, earliest - now}
end
local next_tat = math.max(tat, now) + t
local full_again_ms = math.ceil((next_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%d', next_tat), 'PX', full_again_ms)
local remaining = math.floor(math.min(now + tau + t - next_tat, tau + t) / t)
return {1, remaining}
