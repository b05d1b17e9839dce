-- POST /sessions/answers-<n>/update: append one of the bodies in BENCH_BODIES (a file, one
-- JSON update per line: Greptile-like answers) to one of 1,000 sessions.
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
local counter = 0
function setup(thread) thread:set("offset", math.random(0, 999)) end
function request()
  counter = counter + 1
  local id = (counter * 7919 + offset) % 1000
  return wrk.format("POST", "/sessions/answers-" .. id .. "/update", {["Content-Type"] = "application/json"}, bodies[(counter % #bodies) + 1])
end
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
