-- wrk script for benches/load.sh: GET /auth/me with a Bearer token.
--
-- BENCH_TOKENS_FILE names a file with one token per line, obtained by
-- logging in before the run. wrk thread i uses token i (cycling when there
-- are fewer tokens than threads), so the requests are spread over several
-- sessions. The header is set once per thread in init, which keeps the
-- request static: wrk then calls no Lua per request, and the client's cost
-- stays as low as for report.lua alone.
--
-- Prints WRK_RESULT (report.lua).

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local tokens = {}
local threads = 0

local function read_tokens()
  local path = os.getenv("BENCH_TOKENS_FILE")
  if not path then error("me.lua: set BENCH_TOKENS_FILE to a file of tokens") end
  local file = io.open(path, "r")
  if not file then error("me.lua: cannot open BENCH_TOKENS_FILE " .. path) end
  for line in file:lines() do
    if line ~= "" then table.insert(tokens, line) end
  end
  file:close()
  if #tokens == 0 then error("me.lua: no token in " .. path) end
end

function setup(thread)
  if #tokens == 0 then read_tokens() end
  threads = threads + 1
  thread:set("token", tokens[(threads - 1) % #tokens + 1])
end

function init(args)
  wrk.headers["Authorization"] = "Bearer " .. token
end
