-- How long logins for this username (KEYS[1]) or from this client (KEYS[2]) stay locked:
-- the longer of the two, in ms, or 0 when neither is.
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local remaining = 0
for _, key in ipairs(KEYS) do
  local until_ms = tonumber(redis.call('GET', key))
  if until_ms and until_ms - now > remaining then
    remaining = until_ms - now
  end
end
return remaining
