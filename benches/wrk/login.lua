-- wrk script for benches/load.sh: POST /auth/login as one of BENCH_USERS
-- accounts (default 200), picked at random for every request, with the right
-- password. The accounts are <BENCH_USER_PREFIX><i>@load.example for i in
-- 1..BENCH_USERS, all with password BENCH_PASSWORD; load.sh registers them
-- before the run.
--
-- Many accounts, because the server runs the password checks of one account
-- one at a time (so that parallel guesses cannot slip past the lockout): a
-- flood on a single account would measure that queue, not the hashing rate.
--
-- Prints WRK_RESULT (report.lua) and WRK_STATUS (common.lua).

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local users = tonumber(os.getenv("BENCH_USERS") or "200")
local prefix = os.getenv("BENCH_USER_PREFIX") or "user"
local password = os.getenv("BENCH_PASSWORD") or "Load-bench-pw-7Q"
local headers = { ["Content-Type"] = "application/json" }
local bodies = {}

function init(args)
  seed_random()
  -- The bodies are the same in every request for an account: build them once.
  for i = 1, users do
    bodies[i] = '{"email":' .. json_string(prefix .. i .. "@load.example") ..
      ',"password":' .. json_string(password) .. '}'
  end
end

function request()
  return wrk.format("POST", nil, headers, bodies[math.random(users)])
end
