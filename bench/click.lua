-- wrk: tracking-link clicks; every answer must be a 302 to the offer.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  redirects, other = 0, 0
end

function request()
  return wrk.format("GET", "/t/acme-aff1?sub1=bench")
end

function response(status, headers, body)
  if status == 302 then redirects = redirects + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local r, o = 0, 0
  for _, t in ipairs(threads) do
    r = r + t:get("redirects")
    o = o + t:get("other")
  end
  io.write(string.format("CHECK redirects=%d other=%d\n", r, o))
end
