-- GET /body of the bare Hummingbird route: get_history's answer, the floor under it.
function request() return wrk.format("GET", "/body") end
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
