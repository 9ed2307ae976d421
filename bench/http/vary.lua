-- wrk script: POST a body that differs on every request (env WRK_BODY_TEMPLATE, its "%s"
-- replaced by env WRK_NONCE, a thread number and a counter), so no decision cache can answer: the
-- cache-disabled workload. The harness gives each wrk run its own nonce, so runs never repeat
-- each other's inputs either.
local counter = 0
local thread_tag = ""
local template = os.getenv("WRK_BODY_TEMPLATE")
local headers = { ["Content-Type"] = "application/json" }
local threads = {}

function setup(thread)
  thread:set("tag", (os.getenv("WRK_NONCE") or "") .. "-" .. tostring(#threads))
  table.insert(threads, thread)
end

function init(args)
  thread_tag = tag or "0"
end

function request()
  counter = counter + 1
  local body = string.gsub(template, "%%s", thread_tag .. "-" .. counter)
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
