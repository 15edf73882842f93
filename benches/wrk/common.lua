-- Shared by the wrk scripts of benches/load.sh that send a different request
-- each time (login.lua, register.lua). Loaded with dofile, it:
--   - loads report.lua, so the WRK_RESULT line is exactly the one
--     benches/http.sh parses (same keys, same units);
--   - numbers wrk's threads 1..N (global `thread_id` in each thread), so
--     scripts can make per-thread values;
--   - counts the responses of each HTTP status and, after WRK_RESULT, prints
--     WRK_STATUS 200=N 503=N ... (ascending status), because a login flood
--     can be "fast" by answering 503 and only the breakdown shows it.
-- Counting needs a Lua call per response, which is why the static
-- high-rate scripts (report.lua alone, me.lua) do not load this file.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

statuses = {}

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

-- Seeds math.random differently in every thread and every run.
function seed_random()
  math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919 + math.floor(os.clock() * 1e6))
  -- LuaJIT's first values after seeding are poorly mixed.
  for _ = 1, 10 do math.random() end
end

-- A JSON string literal. The values used here are plain ASCII, but quotes and
-- backslashes are escaped anyway so a BENCH_PASSWORD with them stays valid.
function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local report_done = done

function done(summary, latency, requests)
  report_done(summary, latency, requests)
  local totals, codes = {}, {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses") or {}) do
      if not totals[code] then table.insert(codes, code) end
      totals[code] = (totals[code] or 0) + n
    end
  end
  table.sort(codes)
  local parts = {}
  for _, code in ipairs(codes) do
    table.insert(parts, string.format("%d=%d", code, totals[code]))
  end
  io.write("WRK_STATUS " .. table.concat(parts, " ") .. "\n")
end
