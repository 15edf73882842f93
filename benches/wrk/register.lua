-- wrk script for benches/load.sh: POST /auth/register with a new email in
-- every request, so every request is a real registration (one Argon2 hash
-- and one INSERT) and none is a cheap 409 email_taken.
--
-- The email is reg-<run>-<thread>-<counter>-<random>@load.example: the
-- counter is unique within a thread, the thread number within a wrk process,
-- and BENCH_RUN_ID (load.sh sets a new one per wrk process; the time
-- otherwise) plus the random part between processes.
--
-- Prints WRK_RESULT (report.lua) and WRK_STATUS (common.lua).

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local run = os.getenv("BENCH_RUN_ID") or tostring(os.time())
local password = json_string(os.getenv("BENCH_PASSWORD") or "Load-bench-pw-7Q")
local headers = { ["Content-Type"] = "application/json" }
local counter = 0

function init(args)
  seed_random()
end

function request()
  counter = counter + 1
  local email = string.format("reg-%s-%d-%d-%d@load.example",
    run, thread_id, counter, math.random(1, 1000000000))
  return wrk.format("POST", nil, headers,
    '{"email":' .. json_string(email) .. ',"password":' .. password .. '}')
end
