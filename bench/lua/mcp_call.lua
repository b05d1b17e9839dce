-- POST /mcp tools/call in one of the MCP sessions listed in BENCH_SESSIONS (file, one id per line).
-- BENCH_TOOL: get_repository_info, or query_repository (conversations bench-<n>, 200 of them).
local sessions = {}
for line in io.lines(os.getenv("BENCH_SESSIONS")) do sessions[#sessions + 1] = line end
local tool = os.getenv("BENCH_TOOL")
-- BENCH_AUTHORIZATION: the Authorization header of every call (a client key, or a signed-in token).
local authorization = os.getenv("BENCH_AUTHORIZATION")
local counter = 0
function request()
  counter = counter + 1
  local session = sessions[(counter % #sessions) + 1]
  local arguments
  if tool == "query_repository" then
    arguments = '{"query":"How is routing done?","repositories":[{"remote":"github","repository":"acme/widgets","branch":"main"}],"session_id":"bench-' .. (counter % 200) .. '"}'
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
