#!/usr/bin/env python3
"""What one connection costs auth-server builds, compared in one run.

For each binary given (typically a build of an older commit and the current
one), this starts the server on its own port and database, then measures:

- descriptors: the server's open descriptors at rest and with 500 idle
  connections open (from /proc/PID/fd), hence descriptors per connection;
- churn: requests/s for `GET /nonexistent` (a static 404, no database work)
  with `Connection: close`, so each request is a new connection and a new
  thread. wrk -t2 -c64, ROUNDS rounds of DURATION, the binaries alternated
  so that drift on a shared machine hits all of them alike; the median is
  reported with every round.

Usage:
    benches/connection_cost.py BIN [BIN ...]
    # e.g. an older commit against the working tree:
    git worktree add /tmp/old 968aaef
    (cd /tmp/old && CARGO_TARGET_DIR=/tmp/oldtarget cargo build --release --locked)
    cargo build --release --locked
    benches/connection_cost.py /tmp/oldtarget/release/auth-server target/release/auth-server

Needs wrk, the mariadb (or mysql) client and a server reachable as root
without a password on 127.0.0.1:3306; creates and drops databases named
auth_bench_conn_N. Environment: ROUNDS (3), DURATION (10s), IDLE (500),
BASE_PORT (18220).
"""

import base64
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = os.environ.get("DURATION", "10s")
IDLE = int(os.environ.get("IDLE", "500"))
BASE_PORT = int(os.environ.get("BASE_PORT", "18220"))


def sql(statement):
    subprocess.run(["mariadb", "-h127.0.0.1", "-uroot", "-e", statement], check=True)


def start(binary, n):
    port = BASE_PORT + n
    db = f"auth_bench_conn_{n}"
    sql(f"DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}")
    env = dict(
        os.environ,
        DATABASE_URL=f"mysql://root@127.0.0.1:3306/{db}",
        TOKEN_SECRET=base64.b64encode(os.urandom(32)).decode(),
        BIND_ADDR=f"127.0.0.1:{port}",
        LOG_LEVEL="warn",
    )
    process = subprocess.Popen([binary], env=env, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process, port, db
        except OSError:
            time.sleep(0.1)
    process.kill()
    sys.exit(f"{binary} did not become healthy on port {port}")


def descriptors(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def idle_cost(process, port):
    at_rest = descriptors(process.pid)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(IDLE)]
    time.sleep(1.5)  # let the server accept them all
    loaded = descriptors(process.pid)
    for client in clients:
        client.close()
    time.sleep(1.5)
    return at_rest, loaded


def churn(port):
    out = subprocess.run(
        ["wrk", "-t2", "-c64", f"-d{DURATION}", "-H", "Connection: close",
         f"http://127.0.0.1:{port}/nonexistent"],
        check=True, capture_output=True, text=True,
    ).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def main():
    binaries = sys.argv[1:]
    if not binaries:
        sys.exit(__doc__)
    servers = [start(b, n) for n, b in enumerate(binaries)]
    try:
        idle = [idle_cost(p, port) for p, port, _ in servers]
        rounds = [[] for _ in binaries]
        for _ in range(ROUNDS):
            for i, (_, port, _) in enumerate(servers):
                rounds[i].append(churn(port))
    finally:
        for process, _, db in servers:
            process.terminate()
            process.wait()
            sql(f"DROP DATABASE IF EXISTS {db}")
    print(f"| binary | descriptors at rest | with {IDLE} idle connections | per connection "
          f"| `Connection: close` req/s, median | rounds |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for binary, (at_rest, loaded), runs in zip(binaries, idle, rounds):
        print(f"| `{binary}` | {at_rest} | {loaded} | {(loaded - at_rest) / IDLE:.2f} "
              f"| {statistics.median(runs):,.0f} | {', '.join(f'{r:,.0f}' for r in runs)} |")


if __name__ == "__main__":
    main()
