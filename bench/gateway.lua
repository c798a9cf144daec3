-- POST one JSON body to the gateway with its bearer token: ["GET","bench:k"] to /,
-- or a batch of commands to /pipeline. run.py passes the body and token in the
-- environment so the token never shows up in a process listing.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/json"
