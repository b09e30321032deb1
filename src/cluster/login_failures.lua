-- One failed login, counted for the suspicious-login monitor in one atomic step.
--
-- KEYS[1]  sorted set: the clients that failed for this username (score: last failure, ms)
-- KEYS[2]  sorted set: the usernames that failed from this client
-- KEYS[3]  the username's lock    KEYS[4]  the client's block
--          (value: the lock's end in ms; the key outlives a zero lockout by a minute so
--           the same pattern is reported once, not on every failure)
-- ARGV[1]  this client (its keyed hash)   ARGV[2]  this username (its keyed hash)
-- ARGV[3]  window (ms)   ARGV[4]  clients per username   ARGV[5]  usernames per client
-- ARGV[6]  lockout (ms)
--
-- Returns {distinct clients, distinct usernames, username newly locked, client newly blocked}.
local window = tonumber(ARGV[3])
local lockout = tonumber(ARGV[6])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)

-- Adds `member` to the failures in `key` and counts the distinct members within the window.
-- Only the newest `4 * threshold` are kept: enough to count up to the threshold, and an
-- attacker cannot grow the set without bound.
local function count(key, member, threshold)
  redis.call('ZADD', key, now, member)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (now - window))
  local keep = 4 * threshold
  local n = redis.call('ZCARD', key)
  if n > keep then
    redis.call('ZREMRANGEBYRANK', key, 0, n - keep - 1)
    n = keep
  end
  redis.call('PEXPIRE', key, window)
  return n
end

local function lock(key, distinct, threshold)
  if distinct < threshold then
    return 0
  end
  local ttl = lockout
  if ttl == 0 then
    ttl = 60000
  end
  if redis.call('SET', key, string.format('%d', now + lockout), 'NX', 'PX', ttl) then
    return 1
  end
  return 0
end

local clients = count(KEYS[1], ARGV[1], tonumber(ARGV[4]))
local usernames = count(KEYS[2], ARGV[2], tonumber(ARGV[5]))
return {
  clients,
  usernames,
  lock(KEYS[3], clients, tonumber(ARGV[4])),
  lock(KEYS[4], usernames, tonumber(ARGV[5])),
}
