-- POST /sessions/churn-<thread>-<n>/update: every request a new session, as MCP clients that
-- start, call once and go away make them: 400 bytes, principal "bench", and a lifetime of
-- BENCH_EXPIRES seconds (none when unset: the host's retention, i.e. kept).
local content = string.rep("e", 400)
local expires = os.getenv("BENCH_EXPIRES")
local lifetime = expires and (',"expires_after":' .. expires) or ""
local body = '{"operation":"append_message","message":{"role":"system","content":"' .. content .. '"},"principal":"bench"' .. lifetime .. '}'
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("prefix", "churn-" .. threads .. "-" .. math.random(0, 999999999))
end
function request()
  counter = counter + 1
  return wrk.format("POST", "/sessions/" .. prefix .. "-" .. counter .. "/update", {["Content-Type"] = "application/json"}, body)
end
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
