-- The gateway's requests for bench/topology.py, with its bearer token from the environment.
-- BENCH_BODY set: that JSON body on every request (a /pipeline batch).
-- BENCH_KEYS=N instead: POST / ["GET","bench:<random 0..N-1>"], single commands whose keys
-- land on every shard of a cluster, as a real workload's do.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local body = os.getenv("BENCH_BODY")
local keys = tonumber(os.getenv("BENCH_KEYS") or "0")
local headers = {
  ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"),
  ["Content-Type"] = "application/json",
}

local threads = 0

function setup(thread)  -- each wrk thread draws its own keys
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  math.randomseed(os.time() * 100 + (id or 0))
end

function request()
  if body then
    return wrk.format("POST", nil, headers, body)
  end
  return wrk.format("POST", nil, headers,
                    string.format('["GET","bench:%d"]', math.random(0, keys - 1)))
end
