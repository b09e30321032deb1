-- wrk script for the filmvault benchmark. Chosen by environment variables:
--   BENCH_WORKLOAD   read | revalidate | list | like | add | login | spread
--   BENCH_FLAVOR     filmvault (default) | reference: the seed-shaped servers (Flask, the bare
--                    actix ceiling) have /films/{id}, /?like=, /add_film and nothing else
--   BENCH_NFILMS     ids drawn from 1..N (default 1000)
--   BENCH_HEADERS    extra headers, one "Name: value" per line (the bearer token)
--   BENCH_LOGIN      JSON body of the login workload
--   BENCH_ETAG       the ETag of film 1, which "revalidate" sends as If-None-Match (a 304);
--                    the references, which have no ETag, answer it as a plain read
-- Requests are pre-built and cycled, so wrk's per-request Lua cost is a table lookup, except
-- for "spread", which gives every request a new X-Forwarded-For (100 000 distinct client keys
-- for the rate limiter, via a trusted proxy). done() prints one machine-readable BENCH line.

local reqs = {}
local n = 4096
local idx = 0
local thread_id = 0
local counter = 0
local workload
local headers = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
end

local function with(extra)
  local h = {}
  for k, v in pairs(headers) do h[k] = v end
  for k, v in pairs(extra or {}) do h[k] = v end
  return h
end

function init(args)
  workload = os.getenv("BENCH_WORKLOAD") or "read"
  local flavor = os.getenv("BENCH_FLAVOR") or "filmvault"
  local nfilms = tonumber(os.getenv("BENCH_NFILMS") or "1000")
  headers["Origin"] = "http://localhost:3000"
  for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\n]+") do
    local k, v = string.match(line, "^%s*([^:]+):%s*(.-)%s*$")
    if k then headers[k] = v end
  end
  math.randomseed(os.time() * 7919 + (tid or 1) * 104729)
  local json = { ["Content-Type"] = "application/json" }
  for i = 1, n do
    local id = math.random(1, nfilms)
    if workload == "read" then
      local path = flavor == "reference" and "/films/" or "/api/v1/films/"
      reqs[i] = wrk.format("GET", path .. id, with())
    elseif workload == "revalidate" then
      if flavor == "reference" then
        reqs[i] = wrk.format("GET", "/films/" .. id, with())
      else
        reqs[i] = wrk.format("GET", "/api/v1/films/1",
          with({ ["If-None-Match"] = os.getenv("BENCH_ETAG") }))
      end
    elseif workload == "list" then
      local path = flavor == "reference" and ("/films/" .. id)
        or ("/api/v1/films?limit=20&offset=" .. (id % 980))
      reqs[i] = wrk.format("GET", path, with())
    elseif workload == "like" then
      reqs[i] = wrk.format("GET", "/?like=" .. id, with())
    elseif workload == "add" then
      local body = string.format('{"name":"Bench film %d-%d","studio":"Bench Studio %d"}', tid or 1, i, id % 7)
      reqs[i] = wrk.format("POST", "/add_film", with(json), body)
    elseif workload == "login" then
      reqs[i] = wrk.format("POST", "/api/v1/auth/login", with(json), os.getenv("BENCH_LOGIN"))
    elseif workload ~= "spread" then
      error("unknown BENCH_WORKLOAD " .. workload)
    end
  end
end

function request()
  if workload == "spread" then
    counter = counter + 1
    local k = counter + (tid or 1) * 1000000
    local ip = string.format("10.%d.%d.%d", math.floor(k / 65536) % 256,
      math.floor(k / 256) % 256, k % 256)
    return wrk.format("GET", "/api/v1/films/1", with({ ["X-Forwarded-For"] = ip }))
  end
  idx = idx % n + 1
  return reqs[idx]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_s=%.3f rps=%.1f p50_us=%d p99_us=%d max_us=%d " ..
    "err_connect=%d err_read=%d err_write=%d err_timeout=%d status_ge400=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status))
end
