-- wrk script for bench/scaling.py: POST chat requests over a working set of prompts.
--   WRK_MODEL    the model name
--   WRK_KEYS     how many distinct prompts ("q1" .. "qN")
--   WRK_HEADERS  JSON object of extra headers, flat strings only (e.g. Authorization)
--   WRK_STREAM   "1": ask for a streamed answer ("stream": true)
-- done() prints one WRK_JSON line that bench/load.py parses.

local model = os.getenv("WRK_MODEL")
local keys = tonumber(os.getenv("WRK_KEYS"))
local stream = os.getenv("WRK_STREAM") == "1" and ',"stream":true' or ""

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local headers = os.getenv("WRK_HEADERS") or "{}"
for key, value in string.gmatch(headers, '"([^"]+)"%s*:%s*"([^"]*)"') do
  wrk.headers[key] = value
end

local function body(i)
  return '{"model":"' .. model .. '","messages":[{"role":"user","content":"q' .. i .. '"}]' .. stream .. '}'
end

init = function(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

request = function()
  return wrk.format(nil, nil, nil, body(math.random(keys)))
end

done = function(summary, latency, requests)
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "status_errors": %d, "p50_us": %.1f, "p90_us": %.1f, "p99_us": %.1f}\n',
    summary.requests, summary.duration, summary.errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
