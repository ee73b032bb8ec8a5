-- wrk script: POST pre-signed Stripe webhook bodies, each once, in order.
-- Usage: wrk -t1 -c8 -d10s -s bench/webhook.lua URL -- BODIES_FILE [FIRST_INDEX]
-- BODIES_FILE: one request a line, "<Stripe-Signature header>\t<raw JSON body>".
-- Prints one line "BENCH_JSON {...}" with the figures bench/load.py reads.

local requests = {}
local index = 0
local wraps = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  local first = tonumber(args[2] or "0")
  local file = assert(io.open(path, "r"))
  for line in file:lines() do
    local tab = line:find("\t", 1, true)
    local signature = line:sub(1, tab - 1)
    local body = line:sub(tab + 1)
    requests[#requests + 1] = wrk.format("POST", nil,
      {["Content-Type"] = "application/json", ["Stripe-Signature"] = signature}, body)
  end
  file:close()
  index = first % #requests
  wraps = 0
end

function request()
  index = index + 1
  if index > #requests then
    index = 1
    wraps = wraps + 1
  end
  return requests[index]
end

function done(summary, latency, requests_)
  local total_wraps = 0
  for _, thread in ipairs(threads) do
    total_wraps = total_wraps + (thread:get("wraps") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us": %d, "requests": %d, "bytes": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"mean_us": %.1f, "max_us": %d, "wraps": %d}\n',
    summary.duration, summary.requests, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max, total_wraps))
end
