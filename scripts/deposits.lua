-- Back-office deposits of 1 cent on players P1..P$PLAYERS, uniform, each with
-- an Idempotency-Key never used before (run id, thread, counter).
local threads, next_thread = {}, 0
local run = os.getenv("RUN") or tostring(os.time())
local players = tonumber(os.getenv("PLAYERS") or "10000")

function setup(thread)
  next_thread = next_thread + 1
  thread:set("tid", next_thread)
  table.insert(threads, thread)
end

function init(args)
  counter, failed = 0, 0
  math.randomseed(os.time() * 1000 + tid)
end

function request()
  counter = counter + 1
  local headers = {
    ["Authorization"] = "Bearer admin",
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = string.format("%s-%d-%d", run, tid, counter),
  }
  return wrk.format("POST", "/v1/players/P" .. math.random(1, players) .. "/deposits", headers, '{"amount":1}')
end

function response(status, headers, body)
  if status ~= 201 then failed = failed + 1 end
end

function done(summary, latency, requests)
  local failures = 0
  for _, thread in ipairs(threads) do failures = failures + thread:get("failed") end
  io.write(string.format("RESULT rps=%.0f requests=%d not_201=%d p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests / (summary.duration / 1e6), summary.requests, failures,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
