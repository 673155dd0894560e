-- Every request a new visitor: a User-Agent never sent before.
local id = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  math.randomseed(os.time() * 1000 + (tid or 0))
end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/hit/bench.example/key", {["User-Agent"] = "ua-" .. (tid or 0) .. "-" .. math.random(1, 1000000000) .. "-" .. n})
end
