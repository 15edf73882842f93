-- wrk script for benches/refresh.sh: POST /auth/refresh, each request with
-- its own session's current refresh token, rotating.
--
-- BENCH_REFRESH_FILE names a file with one refresh token per line (one per
-- session, from logging in before the run). Thread i of N takes lines i,
-- i+N, i+2N, ... as its queue. A request takes the token at the head of the
-- queue; its answer carries that session's next refresh token, which goes to
-- the back. So every request presents a token that is current (never one
-- just traded, which the server would answer from its reuse grace without
-- rotating), as long as each thread has at least as many sessions as
-- connections: the script fails the run otherwise. An answer without a token
-- (any status but 200) loses its session for the rest of the run; the
-- WRK_STATUS line shows how many.
--
-- Prints WRK_RESULT (report.lua) and WRK_STATUS (common.lua).

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local thread_count = 0
local common_setup = setup

function setup(thread)
  if not os.getenv("BENCH_REFRESH_FILE") then error("refresh.lua: set BENCH_REFRESH_FILE") end
  common_setup(thread)
  thread_count = thread_count + 1
  thread:set("index", thread_count)
end

local queue, head, tail = {}, 1, 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  local tokens = {}
  for line in io.lines(os.getenv("BENCH_REFRESH_FILE")) do
    if line ~= "" then table.insert(tokens, line) end
  end
  local threads = tonumber(os.getenv("BENCH_THREADS") or "2")
  for i = index, #tokens, threads do
    tail = tail + 1
    queue[tail] = tokens[i]
  end
end

function request()
  if head > tail then error("refresh.lua: no refresh token left in this thread's queue") end
  local token = queue[head]
  queue[head] = nil
  head = head + 1
  return wrk.format("POST", nil, headers, '{"refresh_token":"' .. token .. '"}')
end

local count_status = response

function response(status, headers, body)
  count_status(status, headers, body)
  if status == 200 then
    local token = body:match('"refresh_token":"([A-Za-z0-9_.-]+)"')
    if token then
      tail = tail + 1
      queue[tail] = token
    end
  end
end
