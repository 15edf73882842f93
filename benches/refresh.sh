#!/usr/bin/env bash
# What a refresh costs next to an authenticated read: POST /auth/refresh
# (each request with its own session's current refresh token, rotating:
# one locked read and one update in a transaction) against GET /auth/me
# (one primary-key read), at two concurrencies, in one run on one server.
#
# Starts the release binary against a fresh database (dropped and created;
# its name must contain "bench"), with RATE_LIMIT_BURST=0 and LOG_LEVEL=warn.
# Before each refresh run it logs in BENCH_SESSIONS new sessions, since a run
# leaves every session one refresh token further than any file could say.
# The scenarios alternate round by round. Prints one line per run and a
# markdown table of medians with the refresh/me ratio.
#
# Needs wrk, curl, python3 and the mariadb client. Environment (optional):
#   BENCH_DATABASE_URL  mysql://root@127.0.0.1:3306/auth_bench_refresh
#   BENCH_ROUNDS        3
#   BENCH_DURATION      10s
#   BENCH_THREADS       2      wrk threads
#   BENCH_SESSIONS      128    sessions per refresh run (at least the
#                              highest concurrency: each connection holds one)
#   BENCH_PORT          18095
#   BENCH_SKIP_BUILD    1 to use target/release/auth-server as it is
#
# Usage: benches/refresh.sh > report.md

set -euo pipefail
cd "$(dirname "$0")/.."

DB_URL=${BENCH_DATABASE_URL:-mysql://root@127.0.0.1:3306/auth_bench_refresh}
ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-10s}
THREADS=${BENCH_THREADS:-2}
SESSIONS=${BENCH_SESSIONS:-128}
PORT=${BENCH_PORT:-18095}
URL="http://127.0.0.1:$PORT"
export BENCH_THREADS=$THREADS

for tool in wrk curl python3 mariadb; do
    command -v "$tool" >/dev/null || { echo "refresh.sh: needs $tool" >&2; exit 2; }
done
db_name=${DB_URL##*/}
[[ $db_name == *bench* ]] || { echo "refresh.sh: the database name must contain 'bench' (it is dropped)" >&2; exit 2; }
server_url=${DB_URL%/*}
hostport=${server_url##*@}
user=${server_url#mysql://}
user=${user%@*}

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    cargo build --release --locked >&2
fi

dir=$(mktemp -d)
server_pid=""
cleanup() {
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

mariadb -h"${hostport%:*}" -P"${hostport#*:}" -u"$user" \
    -e "DROP DATABASE IF EXISTS \`$db_name\`; CREATE DATABASE \`$db_name\`"
DATABASE_URL=$DB_URL TOKEN_SECRET=refresh-benchmark-key-0123456789-abcdefgh \
    BIND_ADDR="127.0.0.1:$PORT" RATE_LIMIT_BURST=0 LOG_LEVEL=warn \
    target/release/auth-server 2>"$dir/server.log" &
server_pid=$!
for _ in $(seq 100); do
    curl -fsS -o /dev/null "$URL/healthz" 2>/dev/null && break
    sleep 0.1
done

# Logs in N sessions of 16 accounts, 8 at a time; writes their access
# tokens to $2 and their refresh tokens to $3.
login_sessions() {
    python3 - "$URL" "$1" "$2" "$3" <<'PY'
import concurrent.futures, json, sys, urllib.request

url, n, access_file, refresh_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def post(path, body):
    request = urllib.request.Request(url + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as e:
        return e.code, None

password = "refresh benchmark passphrase"
for i in range(16):
    post("/auth/register", {"email": f"bench{i}@example.com", "password": password})

def login(i):
    status, body = post("/auth/login", {"email": f"bench{i % 16}@example.com", "password": password})
    if status != 200:
        sys.exit(f"login answered {status}")
    return body["token"], body["refresh_token"]

with concurrent.futures.ThreadPoolExecutor(8) as pool:
    pairs = list(pool.map(login, range(n)))
with open(access_file, "w") as f:
    f.writelines(a + "\n" for a, _ in pairs)
with open(refresh_file, "w") as f:
    f.writelines(r + "\n" for _, r in pairs)
PY
}

results=$dir/results
: >"$results"
run() {
    local scenario=$1 c=$2 out
    if [[ $scenario == refresh ]]; then
        login_sessions "$SESSIONS" "$dir/access" "$dir/refresh"
        out=$(BENCH_REFRESH_FILE="$dir/refresh" wrk -t"$THREADS" -c"$c" -d"$DURATION" \
            -s benches/wrk/refresh.lua "$URL/auth/refresh")
    else
        login_sessions 8 "$dir/access" "$dir/refresh"
        out=$(BENCH_TOKENS_FILE="$dir/access" wrk -t"$THREADS" -c"$c" -d"$DURATION" \
            -s benches/wrk/me.lua "$URL/auth/me")
    fi
    local result status
    result=$(grep '^WRK_RESULT' <<<"$out")
    status=$(grep '^WRK_STATUS' <<<"$out" || echo "WRK_STATUS")
    echo "$scenario c=$c $result $status" >&2
    echo "$scenario $c $result" >>"$results"
}

echo "warming up" >&2
login_sessions 8 "$dir/access" "$dir/refresh"
BENCH_TOKENS_FILE="$dir/access" wrk -t"$THREADS" -c8 -d3s -s benches/wrk/me.lua "$URL/auth/me" >/dev/null
for round in $(seq "$ROUNDS"); do
    for c in 8 64; do
        run me "$c"
        run refresh "$c"
    done
    echo "round $round of $ROUNDS done" >&2
done

python3 - "$results" "$ROUNDS" "$DURATION" "$THREADS" <<'PY'
import statistics, sys

path, rounds, duration, threads = sys.argv[1:5]
runs = {}
for line in open(path):
    scenario, c, _, *fields = line.split()
    values = dict(f.split("=") for f in fields)
    if int(values["non_2xx_3xx"]) or int(values["timeouts"]):
        sys.exit(f"a run had errors: {line.strip()}")
    runs.setdefault((int(c), scenario), []).append(values)

print(f"wrk -t{threads} -d{duration}, median of {rounds} runs per cell\n")
print("| concurrency | request | req/s | p50 | p99 |")
print("|---|---|---|---|---|")
for c in sorted({c for c, _ in runs}):
    rps = {}
    for scenario, label in (("me", "GET /auth/me"), ("refresh", "POST /auth/refresh")):
        r = runs[(c, scenario)]
        rps[scenario] = statistics.median(float(v["rps"]) for v in r)
        p50 = statistics.median(int(v["p50_us"]) for v in r) / 1000
        p99 = statistics.median(int(v["p99_us"]) for v in r) / 1000
        print(f"| {c} | {label} | {rps[scenario]:.0f} | {p50:.2f} ms | {p99:.2f} ms |")
    print(f"| {c} | refresh / me | {rps['refresh'] / rps['me']:.2f}x | | |")
PY
