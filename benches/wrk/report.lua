-- wrk script used by benches/http.sh: after the run, prints ONE line that the
-- script parses, so that it never has to scrape wrk's human-readable output
-- (whose units change between us, ms and s).
--
-- Line format (all latencies in microseconds, rps over the measured duration):
-- WRK_RESULT requests=N duration_us=N rps=F p50_us=N p90_us=N p99_us=N max_us=N
--            connect_errors=N read_errors=N write_errors=N timeouts=N non_2xx_3xx=N

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d rps=%.1f p50_us=%.0f p90_us=%.0f p99_us=%.0f max_us=%.0f " ..
    "connect_errors=%d read_errors=%d write_errors=%d timeouts=%d non_2xx_3xx=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, e.status))
end
