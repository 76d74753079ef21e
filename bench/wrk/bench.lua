-- bench.lua: every wrk workload of bench/run.sh, for little-key-value and etcd.
--
-- Parameters come from the environment, read when each Lua state is created,
-- so the `response` hook exists only in the modes that need it (wrk parses
-- every response body when it is defined, which costs client CPU):
--   BENCH_MODE     lkv-get | lkv-put | lkv-mix | lkv-stall | lkv-load
--                  etcd-get | etcd-put | etcd-load
--   BENCH_PREFIX   prefix of the preloaded keys: prefix .. zero-padded index
--                  (1..BENCH_KEYS), 16 bytes in all
--   BENCH_FRESH_PREFIX  prefix of keys written for the first time: prefix ..
--                  thread (2 digits) .. counter (8 digits); unique per run
--   BENCH_KEYS     how many preloaded keys exist (or are to be loaded)
--   BENCH_THREADS  wrk's -t, so that loader threads split the keys exactly
--   BENCH_VALUE_BYTES  value size (default 100)
--   BENCH_GET_PCT  share of GETs in lkv-mix / lkv-stall, 0..100
-- At the end, done() prints one line "BENCH_RESULT {json}" with latencies in
-- microseconds.

local mode = os.getenv("BENCH_MODE") or "lkv-get"
local prefix = os.getenv("BENCH_PREFIX") or "k"
local fresh_prefix = os.getenv("BENCH_FRESH_PREFIX") or "f"
local nkeys = tonumber(os.getenv("BENCH_KEYS") or "1000")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local value_bytes = tonumber(os.getenv("BENCH_VALUE_BYTES") or "100")
local get_pct = tonumber(os.getenv("BENCH_GET_PCT") or "90")
local key_fmt = "%s%0" .. (16 - #prefix) .. "d"

-- Main state only: hands each thread its index.
local next_tid = 0
function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
end

-- A fixed 100-byte value that is not one repeated character.
local alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
local parts = {}
for i = 1, value_bytes do
  local j = (i * 7) % #alphabet + 1
  parts[i] = alphabet:sub(j, j)
end
local value = table.concat(parts)

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(n / 262144) % 64
    local c2 = math.floor(n / 4096) % 64
    local c3 = math.floor(n / 64) % 64
    local c4 = n % 64
    out[#out + 1] = b64chars:sub(c1 + 1, c1 + 1) .. b64chars:sub(c2 + 1, c2 + 1) ..
      (b and b64chars:sub(c3 + 1, c3 + 1) or "=") .. (c and b64chars:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end
local value_b64 = b64(value)

local function preloaded_key(i) return string.format(key_fmt, prefix, i) end
local function random_key() return preloaded_key(math.random(1, nkeys)) end

local counter = 0
local function fresh_key()
  counter = counter + 1
  return string.format("%s%02d%08d", fresh_prefix, tid % 100, counter)
end

-- wrk.format builds each request from tables (headers merged, Host and
-- Content-Length added, lines joined): Lua work on every request, on the
-- cores the server needs too. Only the key changes between requests, so
-- each kind is formatted once with a same-length placeholder and cut into
-- the bytes before and after it; a request is then before .. key .. after,
-- byte for byte what wrk.format would have built. Templates are made on
-- first use, after wrk has set its Host header.
local templates = {}
local function templated(kind, build, key)
  local id = kind .. #key
  local t = templates[id]
  if t == nil then
    local mark = string.rep("\1", #key)
    local sample = build(mark)
    local a, b = sample:find(mark, 1, true)
    t = { sample:sub(1, a - 1), sample:sub(b + 1) }
    templates[id] = t
  end
  return t[1] .. key .. t[2]
end

local json_headers = { ["Content-Type"] = "application/json" }
local function fmt_lkv_put(k) return wrk.format("PUT", "/kv/" .. k, nil, value) end
local function fmt_lkv_get(k) return wrk.format("GET", "/kv/" .. k) end
local function fmt_etcd_put(k)
  return wrk.format("POST", "/v3/kv/put", json_headers,
    '{"key":"' .. k .. '","value":"' .. value_b64 .. '"}')
end
local function fmt_etcd_get(k)
  return wrk.format("POST", "/v3/kv/range", json_headers,
    '{"key":"' .. k .. '","serializable":true}')
end
local function lkv_put(key) return templated("lkv_put", fmt_lkv_put, key) end
local function lkv_get(key) return templated("lkv_get", fmt_lkv_get, key) end
local function etcd_put(key) return templated("etcd_put", fmt_etcd_put, b64(key)) end
local function etcd_get(key) return templated("etcd_get", fmt_etcd_get, b64(key)) end

function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919 + math.floor(os.clock() * 1e6))
end

local generators = {
  ["lkv-get"] = function() return lkv_get(random_key()) end,
  ["lkv-put"] = function() return lkv_put(fresh_key()) end,
  ["lkv-mix"] = function()
    if math.random(1, 100) <= get_pct then return lkv_get(random_key()) end
    return lkv_put(fresh_key())
  end,
  -- Overwrites existing keys, so the key count (and the snapshot) stays put.
  ["lkv-stall"] = function()
    if math.random(1, 100) <= get_pct then return lkv_get(random_key()) end
    return lkv_put(random_key())
  end,
  ["etcd-get"] = function() return etcd_get(random_key()) end,
  ["etcd-put"] = function() return etcd_put(fresh_key()) end,
}

-- Loader: thread t writes keys t+1, t+1+T, t+1+2T, ... up to BENCH_KEYS, each
-- exactly once, then stops once every answer is in. wrk calls request() once
-- on thread 0 before any connection exists, to check the script; that first
-- call returns a GET of a key that does not exist (404), which is not counted
-- either way, so no key is lost to it and no answer is waited for in vain.
if mode == "lkv-load" or mode == "etcd-load" then
  local writer = mode == "lkv-load" and lkv_put or etcd_put
  local idle = wrk.format("GET", "/health")
  local probe = mode == "lkv-load" and wrk.format("GET", "/kv/bench-no-such-key")
    or wrk.format("GET", "/no-such-path")
  local first, next_index, sent, answered = true, nil, 0, 0
  request = function()
    if first then
      first = false
      next_index = tid + 1
      return probe
    end
    sent = sent + 1
    if next_index > nkeys then return idle end
    local k = next_index
    next_index = next_index + nthreads
    return writer(preloaded_key(k))
  end
  response = function(status, headers, body)
    if status == 404 then return end
    answered = answered + 1
    if next_index > nkeys and answered >= sent then wrk.thread:stop() end
  end
else
  request = generators[mode]
  if request == nil then error("bench.lua: unknown BENCH_MODE " .. mode) end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean))
end
