-- POST /mcp tools/call in one of the MCP sessions listed in BENCH_SESSIONS (file, one id per line).
-- BENCH_TOOL: get_repository_info, or query_repository (conversations bench-<thread>-<n>, 200 a
-- wrk thread). A conversation is one client's: its turns go in the same MCP session each time,
-- and no two of them are in flight at once (each thread's connections take its conversations in turn).
local sessions = {}
for line in io.lines(os.getenv("BENCH_SESSIONS")) do sessions[#sessions + 1] = line end
local tool = os.getenv("BENCH_TOOL")
-- BENCH_AUTHORIZATION: the Authorization header of every call (a client key, or a signed-in token).
local authorization = os.getenv("BENCH_AUTHORIZATION")
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("thread_number", threads)
end
function request()
  counter = counter + 1
  local session = sessions[(counter % #sessions) + 1]
  local arguments
  if tool == "query_repository" then
    local number = thread_number or 1
    local conversation = counter % 200
    session = sessions[(((number - 1) * 200 + conversation) % #sessions) + 1]
    arguments = '{"query":"How is routing done?","repositories":[{"remote":"github","repository":"acme/widgets","branch":"main"}],"session_id":"bench-'
      .. number .. '-' .. conversation .. '"}'
  else
    arguments = '{"remote":"github","repository":"acme/widgets","branch":"main"}'
  end
  local body = '{"jsonrpc":"2.0","id":' .. counter .. ',"method":"tools/call","params":{"name":"' .. tool .. '","arguments":' .. arguments .. '}}'
  local headers = {
    ["Content-Type"] = "application/json",
    ["Accept"] = "application/json, text/event-stream",
    ["Mcp-Session-Id"] = session,
    ["MCP-Protocol-Version"] = "2025-11-25",
  }
  if authorization then headers["Authorization"] = authorization end
  return wrk.format("POST", "/mcp", headers, body)
end
dofile(os.getenv("BENCH_LUA_DIR") .. "/report.lua")
