-- wrk script: POST one fixed JSON body with the target's headers.
-- Driven by bench/load.py through the environment, so one script serves every target:
--   WRK_BODY_FILE  path of the request body
--   WRK_HEADERS    JSON object of extra headers, flat strings only (e.g. Authorization)
-- done() prints one WRK_JSON line that load.py parses for exact counts and percentiles.

local f = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local headers = os.getenv("WRK_HEADERS") or "{}"
for key, value in string.gmatch(headers, '"([^"]+)"%s*:%s*"([^"]*)"') do
  wrk.headers[key] = value
end

done = function(summary, latency, requests)
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "status_errors": %d, "p50_us": %.1f, "p90_us": %.1f, "p99_us": %.1f}\n',
    summary.requests, summary.duration, summary.errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
