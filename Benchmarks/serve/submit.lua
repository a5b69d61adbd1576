-- wrk script for scripts/bench-serve: POSTs 14 KiB submissions, each with its own message id (nachrichtenUUID), so
-- every request is a new submission that is validated, recorded, routed and delivered (none is a duplicate).
-- The templates are the files named in TEMPLATES (one path per line); RUN numbers the run (ids differ between runs).

local templates = {}
local counter = 0
local threads = {}

-- Each thread's number arrives as the global thread_id (set from the main state; a local of the same name would
-- hide it and give every thread the same ids).
function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  -- Runs against the same server must not repeat ids either: RUN (a number) tells them apart.
  run = tonumber(os.getenv("RUN") or "0")
  local list = io.open(os.getenv("TEMPLATES"), "r")
  for path in list:lines() do
    local file = io.open(path, "r")
    local text = file:read("*a")
    file:close()
    local s, e = string.find(text, "<bas:nachrichtenUUID>[^<]*</bas:nachrichtenUUID>")
    table.insert(templates, {text:sub(1, s - 1) .. "<bas:nachrichtenUUID>", "</bas:nachrichtenUUID>" .. text:sub(e + 1)})
  end
  list:close()
end

function request()
  counter = counter + 1
  local template = templates[(counter % #templates) + 1]
  local id = string.format("b%07x-%04x-4000-8000-%012x", run, thread_id, counter)
  return wrk.format("POST", "/v1/submissions", {["Content-Type"] = "application/xml"},
                    template[1] .. id .. template[2])
end

function done(summary, latency, requests)
  local non2xx = summary.errors.status
  local seconds = summary.duration / 1e6
  io.write(string.format(
    '{"requests": %d, "non2xx": %d, "socketErrors": %d, "timeouts": %d, "seconds": %.2f, "accepted_per_s": %.0f, ' ..
    '"p50_ms": %.2f, "p90_ms": %.2f, "p99_ms": %.2f, "max_ms": %.2f}\n',
    summary.requests, non2xx, summary.errors.connect + summary.errors.read + summary.errors.write,
    summary.errors.timeout, seconds, (summary.requests - non2xx) / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
