#!/usr/bin/env python3
"""Times two requests against one server, alternating them, and prints the
median and quartiles of each and the ratio of the medians.

Used to check that an answer does not tell two cases apart by its timing
(forgot for a registered and for an unknown address; later, login for an
unknown email and for a wrong password). Alternating A, B, A, B... over one
keep-alive connection spreads the machine's noise evenly over both.

    benches/alternate.py URL PATH BODY_A BODY_B [N]

URL is the server (http://127.0.0.1:8080), PATH the endpoint, BODY_A and
BODY_B the two JSON bodies, N the number of requests of each (default 200).
Only the standard library is used.
"""

import http.client
import json
import statistics
import sys
import time
import urllib.parse


def main():
    if len(sys.argv) not in (5, 6):
        sys.exit(__doc__)
    url, path, body_a, body_b = sys.argv[1:5]
    n = int(sys.argv[5]) if len(sys.argv) == 6 else 200
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    times = {"A": [], "B": []}
    statuses = {"A": set(), "B": set()}
    # A few untimed rounds first, so neither side pays for a cold start.
    for _ in range(5):
        for body in (body_a, body_b):
            conn.request("POST", path, body, headers)
            conn.getresponse().read()
    for _ in range(n):
        for name, body in (("A", body_a), ("B", body_b)):
            started = time.perf_counter()
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            response.read()
            times[name].append((time.perf_counter() - started) * 1000)
            statuses[name].add(response.status)
    report = {}
    for name in ("A", "B"):
        q = statistics.quantiles(times[name], n=4)
        report[name] = {
            "median_ms": round(statistics.median(times[name]), 3),
            "q1_ms": round(q[0], 3),
            "q3_ms": round(q[2], 3),
            "statuses": sorted(statuses[name]),
        }
    report["ratio_of_medians_a_over_b"] = round(
        report["A"]["median_ms"] / report["B"]["median_ms"], 3
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
