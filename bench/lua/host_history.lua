-- GET /sessions/hist-<n>/history of one of 64 sessions holding 20 messages each.
local counter = 0
function request()
  counter = counter + 1
  return wrk.format("GET", "/sessions/hist-" .. (counter % 64) .. "/history")
end
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
