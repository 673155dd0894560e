-- wrk script of the hitcounter bench (bench/run.sh drives it; see bench/bench.py).
--
-- Arguments after `--`: MODE PATH SOFT_SECONDS [NAMESPACE NKEYS]
--   MODE  fixed: every request is GET PATH
--         keys:  GET PATH/NAMESPACE/kNNNN, a key drawn at random from NKEYS
--   SOFT_SECONDS: after this long, a connection whose answer has arrived sends
--         no new complete request: it sends headers without the closing blank
--         line, which no server acts on, and waits there until wrk stops. So
--         nothing is in flight when wrk's duration ends, and every request
--         the servers acted on has been answered and counted below (the
--         record check needs that to be exact). Keep it a second or more
--         below wrk's -d, and wrk's --timeout above the gap.
--
-- Prints one line `BENCH_JSON {...}` with exact counts (sent, 2xx, other),
-- the time of the last answer, and the whole latency histogram (value in us,
-- count) so that several wrk processes can be merged exactly.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("thread_id", counter)
  table.insert(threads, thread)
end

-- per-thread state
sent, ok, other, held = 0, 0, 0, 0
first_send, last_answer = 0, 0
local requests, partial, deadline

local function host_header()
  local host = wrk.host
  if wrk.port then host = host .. ":" .. wrk.port end
  return host
end

local function build(args)
  local mode, path = args[1] or "fixed", args[2] or "/"
  local host = host_header()
  requests = {}
  if mode == "keys" then
    local ns, n = args[4] or "bench", tonumber(args[5] or "1000")
    for i = 1, n do
      requests[i] = string.format("GET %s/%s/k%04d HTTP/1.1\r\nHost: %s\r\n\r\n", path, ns, i - 1, host)
    end
  else
    requests[1] = string.format("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host)
  end
  -- No closing blank line: the server waits for the rest of the headers.
  partial = string.format("GET %s HTTP/1.1\r\nHost: %s\r\n", path, host)
end

function init(args)
  build(args)
  math.randomseed((thread_id or 1) * 7919 + os.time())
  local soft = tonumber(args[3] or "0")
  if soft > 0 then deadline = now() + soft end
end

function request()
  if requests == nil then build({}) end -- wrk checks one request in its main state
  local t = now()
  if deadline and t >= deadline then
    held = held + 1
    return partial
  end
  if first_send == 0 then first_send = t end
  sent = sent + 1
  if #requests == 1 then return requests[1] end
  return requests[math.random(#requests)]
end

function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1 else other = other + 1 end
  last_answer = now()
end

function done(summary, latency, _)
  local s, k, o, h, first, last = 0, 0, 0, 0, math.huge, 0
  for _, t in ipairs(threads) do
    s = s + t:get("sent"); k = k + t:get("ok"); o = o + t:get("other"); h = h + t:get("held")
    local f = t:get("first_send")
    if f > 0 and f < first then first = f end
    local l = t:get("last_answer")
    if l > last then last = l end
  end
  if first == math.huge then first = 0 end
  local hist = {}
  for i = 1, #latency do
    local v, c = latency(i)
    hist[#hist + 1] = string.format("[%d,%d]", v, c)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"sent":%d,"ok":%d,"other":%d,"held":%d,"first_send":%.6f,"last_answer":%.6f,' ..
    '"p50":%d,"p99":%d,"p999":%d,"max":%d,"hist":[%s]}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    s, k, o, h, first, last,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    table.concat(hist, ",")))
end
