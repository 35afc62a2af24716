-- wrk: durable postbacks with varied click ids and a fresh transaction id per request.
-- Click ids come from the file named by CLICK_IDS (one per line); the answer must be "recorded".
local ids = {}
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(os.getenv("CLICK_IDS")) do ids[#ids + 1] = line end
  recorded, other = 0, 0
  math.randomseed(tid * 7919)
end

function request()
  counter = counter + 1
  local cid = ids[math.random(#ids)]
  local path = "/api/postback?api_key=sp_live_acme&click_id=" .. cid ..
    "&transaction_id=" .. os.getenv("RUN_ID") .. "-" .. tid .. "-" .. counter .. "&amount=12.50&status=confirmed"
  return wrk.format("GET", path)
end

function response(status, headers, body)
  if status == 200 and string.find(body, '"recorded"', 1, true) then
    recorded = recorded + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local r, o = 0, 0
  for _, t in ipairs(threads) do
    r = r + t:get("recorded")
    o = o + t:get("other")
  end
  io.write(string.format("CHECK recorded=%d other=%d\n", r, o))
end
