-- Plain GET of the URL on the command line (webdis puts the command in the path:
-- /GET/bench:k, /SET/bench:k/value); only adds the machine-readable report.
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
