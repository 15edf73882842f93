#!/usr/bin/env python3
"""What HTTPS costs against plain HTTP, one binary, in one run (issue 19).

Starts the server twice on fresh databases, once plain and once with
TLS_CERT_FILE/TLS_KEY_FILE (a certificate from a CA made here with
openssl), and measures, alternating the two listeners round by round so
drift on a shared machine hits both alike:

- keep-alive: `GET /healthz` (one SELECT 1 each) with wrk -t2 -c64 over
  keep-alive connections: requests/s, TLS against plain (the target is at
  least 0.8x);
- handshakes: `GET /nonexistent` (a static 404, no database work) with
  `Connection: close`, so every request is a new connection, and over TLS a
  full handshake (wrk does not resume sessions): requests/s at c=64;
- memory: the server's resident memory (VmRSS) at rest and with IDLE idle
  connections open (TLS ones with their handshake done), hence KiB per
  idle connection.

Usage: benches/tls.py [BINARY]   (default target/release/auth-server)

Needs wrk (built with TLS, as Debian's is), openssl, the mariadb client and
a server reachable as root without a password on 127.0.0.1:3306; creates
and drops databases named auth_bench_tls_*. Environment: ROUNDS (3),
DURATION (10s), IDLE (500), BASE_PORT (18240).
"""

import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = os.environ.get("DURATION", "10s")
IDLE = int(os.environ.get("IDLE", "500"))
BASE_PORT = int(os.environ.get("BASE_PORT", "18240"))
BINARY = sys.argv[1] if len(sys.argv) > 1 else "target/release/auth-server"


def sh(*args, **kw):
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def make_certificates(directory):
    """A CA and a P-256 certificate for 127.0.0.1 signed by it."""
    p = lambda name: os.path.join(directory, name)
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    sh("openssl", "req", "-x509", *curve, "-days", "2", "-subj", "/CN=bench CA",
       "-keyout", p("ca.key"), "-out", p("ca.pem"))
    sh("openssl", "req", *curve, "-subj", "/CN=127.0.0.1", "-keyout", p("key.pem"),
       "-out", p("req.csr"))
    with open(p("ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    sh("openssl", "x509", "-req", "-days", "2", "-in", p("req.csr"), "-CA", p("ca.pem"),
       "-CAkey", p("ca.key"), "-CAcreateserial", "-extfile", p("ext.cnf"), "-out", p("cert.pem"))
    return p("cert.pem"), p("key.pem"), p("ca.pem")


class Target:
    def __init__(self, name, port, extra_env, ca):
        self.name, self.port, self.ca = name, port, ca
        self.scheme = "https" if extra_env else "http"
        self.db = f"auth_bench_tls_{name}"
        sh("mariadb", "-h127.0.0.1", "-uroot", "-e",
           f"DROP DATABASE IF EXISTS {self.db}; CREATE DATABASE {self.db}")
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": f"mysql://root@127.0.0.1:3306/{self.db}",
            "TOKEN_SECRET": "bench-secret-0123456789-abcdefghijklmnop",
            "BIND_ADDR": f"127.0.0.1:{port}",
            "LOG_LEVEL": "warn",
            "RATE_LIMIT_BURST": "0",
            "MAX_CONNECTIONS": str(IDLE + 200),
            **extra_env,
        })
        self.process = subprocess.Popen([BINARY], env=env, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                self.connect().close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"{name} did not start")

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        if self.scheme == "https":
            context = ssl.create_default_context(cafile=self.ca)
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
        return sock

    def url(self, path):
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def rss_kib(self):
        with open(f"/proc/{self.process.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def stop(self):
        self.process.terminate()
        self.process.wait()
        sh("mariadb", "-h127.0.0.1", "-uroot", "-e", f"DROP DATABASE IF EXISTS {self.db}")


def wrk(url, close):
    args = ["wrk", "-t2", "-c64", f"-d{DURATION}", "--latency"]
    if close:
        args += ["-H", "Connection: close"]
    out = sh(*args, url).stdout
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def idle_cost(target):
    """KiB of resident memory per idle connection, and the connections kept."""
    before = target.rss_kib()
    held = []
    for _ in range(IDLE):
        held.append(target.connect())
    time.sleep(1)
    after = target.rss_kib()
    for sock in held:
        sock.close()
    return (after - before) / IDLE


def main():
    with tempfile.TemporaryDirectory() as directory:
        cert, key, ca = make_certificates(directory)
        plain = Target("plain", BASE_PORT, {}, ca)
        tls = Target("tls", BASE_PORT + 1, {"TLS_CERT_FILE": cert, "TLS_KEY_FILE": key}, ca)
        try:
            results = {(t.name, kind): [] for t in (plain, tls) for kind in ("keepalive", "close")}
            for round_ in range(1, ROUNDS + 1):
                for target in (plain, tls):
                    k = wrk(target.url("/healthz"), close=False)
                    c = wrk(target.url("/nonexistent"), close=True)
                    results[(target.name, "keepalive")].append(k)
                    results[(target.name, "close")].append(c)
                    print(f"round {round_}: {target.name:5} keep-alive {k:9.1f} req/s, "
                          f"new connection per request {c:8.1f} req/s", flush=True)
            memory = {t.name: idle_cost(t) for t in (plain, tls)}
        finally:
            plain.stop()
            tls.stop()
    med = {key: statistics.median(values) for key, values in results.items()}
    print()
    print(f"| listener | keep-alive GET /healthz req/s | new connection per request req/s | RSS per idle connection (KiB, {IDLE} open) |")
    print("|---|---|---|---|")
    for name in ("plain", "tls"):
        print(f"| {name} | {med[(name, 'keepalive')]:.1f} | {med[(name, 'close')]:.1f} | {memory[name]:.1f} |")
    print(f"| tls / plain | **{med[('tls', 'keepalive')] / med[('plain', 'keepalive')]:.2f}x** "
          f"| {med[('tls', 'close')] / med[('plain', 'close')]:.2f}x "
          f"| {memory['tls'] / memory['plain'] if memory['plain'] else float('nan'):.1f}x |")


if __name__ == "__main__":
    main()
