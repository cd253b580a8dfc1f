-- wrk script: Connect JSON CreateReservation over HTTP/1.1, a unique idempotency key per request.
-- Arguments (after --): run tag, pairs file ("buyer product" per line), bearer token or "-".
local pairs_, n, counter, tag = {}, 0, 0, "t"
local nextId = 0

function setup(thread)
  nextId = nextId + 1
  thread:set("tid", nextId)
end

function init(args)
  tag = args[1] .. "-" .. tostring(tid or 0)
  for line in io.lines(args[2]) do
    local buyer, product = line:match("^(%S+) (%S+)$")
    if buyer then
      n = n + 1
      pairs_[n] = { buyer, product }
    end
  end
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Connect-Protocol-Version"] = "1"
  if args[3] ~= "-" then wrk.headers["Authorization"] = "Bearer " .. args[3] end
  math.randomseed(os.time() + (tid or 0))
end

function request()
  counter = counter + 1
  local p = pairs_[math.random(n)]
  local body = string.format(
    '{"userId":"%s","items":[{"productId":"%s","quantity":"1"}],"idempotencyKey":"%s-%d"}',
    p[1], p[2], tag, counter)
  return wrk.format(nil, "/shop.reservation.v1.ReservationService/CreateReservation", nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status + e.connect + e.read + e.write + e.timeout))
end
