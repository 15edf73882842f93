-- wrk script for benches/admin_list.sh: GET the URL wrk is given (a page of
-- GET /admin/users, its query string included) with the admin's Bearer
-- token from BENCH_TOKEN, set once so the request stays static.
--
-- Prints WRK_RESULT (report.lua).

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

function init(args)
  local token = os.getenv("BENCH_TOKEN")
  if not token or token == "" then error("admin.lua: set BENCH_TOKEN") end
  wrk.headers["Authorization"] = "Bearer " .. token
end
