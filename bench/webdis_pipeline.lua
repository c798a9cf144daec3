-- HTTP/1.1 pipelining against webdis, which has no batch endpoint: each write carries
-- BENCH_DEPTH copies of "GET BENCH_PATH" and the next write waits for all the answers.
-- wrk counts every response, so its requests/s here is commands/s; its latency is
-- recorded once per batch (from the write until the last answer of the batch).
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

local depth = tonumber(os.getenv("BENCH_DEPTH")) or 100
local path = os.getenv("BENCH_PATH")

function init(args)
  local batch = {}
  for i = 1, depth do
    batch[i] = wrk.format("GET", path)
  end
  pipelined = table.concat(batch)
end

function request()
  return pipelined
end
