-- GET / of the bare Hummingbird route (the HTTP floor).
function request() return wrk.format("GET", "/") end
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
