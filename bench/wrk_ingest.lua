-- wrk script for bench/ingest_wrk.py: replays pre-signed requests from a file, one per line:
-- method, path, content type, webhook-id, webhook-timestamp, webhook-signature, body (tab-separated;
-- a body of "@" is the chunk file's bytes). Arguments: the file, the first and last line to use, the
-- chunk file, and "close" to ask for a new connection per request (Connection: close). Answers are counted by status (201 new, 200 duplicate, anything else) for done().
local reqs = {}
local chunk = ""
local at = 0
local close = false
c201, c200, cother = 0, 0, 0
resent = 0 -- requests sent a second time (the list ran out): the runner refuses such a run
local sent = 0
first_other = "" -- the first answer that was neither, for the report

function init(args)
  local f = assert(io.open(args[4], "rb"))
  chunk = f:read("*a")
  f:close()
  close = args[5] == "close"
  local first, last = tonumber(args[2]), tonumber(args[3])
  local n = 0
  for line in io.lines(args[1]) do
    n = n + 1
    if n > first and n <= last then
      local m, p, ct, id, ts, sig, body = line:match(
        "^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      reqs[#reqs + 1] = {m, p, ct, id, ts, sig, body}
    end
  end
end

function request()
  at, sent = at + 1, sent + 1
  if at > #reqs then at = 1 end
  if sent > #reqs then resent = resent + 1 end -- the gateway answers these 200 (duplicates)
  local r = reqs[at]
  local body = r[7]
  if body == "@" then body = chunk end
  local headers = {
    ["Content-Type"] = r[3], ["webhook-id"] = r[4], ["webhook-timestamp"] = r[5], ["webhook-signature"] = r[6],
  }
  if close then headers["Connection"] = "close" end
  return wrk.format(r[1], r[2], headers, body)
end

function response(status, headers, body)
  if status == 201 then c201 = c201 + 1
  elseif status == 200 then c200 = c200 + 1
  else
    cother = cother + 1
    if first_other == "" then first_other = status .. " " .. string.sub(body, 1, 200) end
  end
end

local threads = {}
function setup(thread) threads[#threads + 1] = thread end

function done(summary, latency, requests)
  local a, b, c, w, other = 0, 0, 0, 0, ""
  for _, t in ipairs(threads) do
    a, b, c, w = a + t:get("c201"), b + t:get("c200"), c + t:get("cother"), w + t:get("resent")
    if other == "" then other = t:get("first_other") end
  end
  io.write("WRKOTHER " .. other .. "\n")
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"c201": %d, "c200": %d, "cother": %d, "socket_errors": %d, "resent": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    a, b, c, e.connect + e.read + e.write + e.timeout, w))
end
