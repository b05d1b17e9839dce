-- POST /sessions/bench-<n>/update: append a message with 200 bytes of content, to one of 10,000 sessions.
local content = string.rep("x", 200)
local body = '{"operation":"append_message","message":{"role":"user","content":"' .. content .. '"}}'
local counter = 0
function setup(thread) thread:set("offset", math.random(0, 9999)) end
function request()
  counter = counter + 1
  local id = (counter * 7919 + offset) % 10000
  return wrk.format("POST", "/sessions/bench-" .. id .. "/update", {["Content-Type"] = "application/json"}, body)
end
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
