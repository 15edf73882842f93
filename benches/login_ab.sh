#!/usr/bin/env bash
# Login throughput of two builds, side by side in one run: did a change to
# what a login writes cost anything measurable next to the hashing?
#
# Starts OLD and NEW (two auth-server binaries) at once, each against a
# fresh database of its own (dropped and created; the names contain
# "bench"), with RATE_LIMIT_BURST=0 and LOG_LEVEL=warn, registers
# BENCH_USERS accounts on each, then runs benches/wrk/login.lua against
# them in turn, OLD then NEW, BENCH_ROUNDS times, so the machine's noise
# falls on both. Prints one line per run and the medians with NEW/OLD.
#
# Needs wrk, curl and the mariadb client. Environment (optional):
#   BENCH_ROUNDS       3
#   BENCH_DURATION     10s
#   BENCH_CONCURRENCY  8
#   BENCH_USERS        200
#
# Usage: benches/login_ab.sh OLD_BINARY NEW_BINARY

set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $# -ne 2 ]]; then
    echo "usage: $0 OLD_BINARY NEW_BINARY" >&2
    exit 2
fi
ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-10s}
CONCURRENCY=${BENCH_CONCURRENCY:-8}
USERS=${BENCH_USERS:-200}
PASSWORD=Load-bench-pw-7Q
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

# start NAME BINARY PORT: a server on a fresh database auth_bench_login_NAME.
start() {
    local name=$1 binary=$2 port=$3 db="auth_bench_login_$1"
    mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $db; CREATE DATABASE $db"
    env DATABASE_URL="mysql://root@127.0.0.1:3306/$db" \
        TOKEN_SECRET="bench-secret-$RANDOM-$RANDOM-0123456789abcdef" \
        BIND_ADDR="127.0.0.1:$port" RATE_LIMIT_BURST=0 LOG_LEVEL=warn \
        "$binary" 2>/dev/null &
    pids+=($!)
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
        sleep 0.2
    done
    for i in $(seq "$USERS"); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/auth/register" \
            -H 'Content-Type: application/json' \
            -d "{\"email\":\"user$i@load.example\",\"password\":\"$PASSWORD\"}"
    done
    echo "$name: $binary on port $port, $USERS accounts" >&2
}

start old "$1" 18097
start new "$2" 18098

# rate PORT: requests per second of one wrk run.
rate() {
    BENCH_USERS=$USERS wrk -t2 -c"$CONCURRENCY" -d"$DURATION" \
        -s benches/wrk/login.lua "http://127.0.0.1:$1/auth/login" |
        awk '/^Requests\/sec:/ { print $2 }'
}

old=()
new=()
for round in $(seq "$ROUNDS"); do
    old+=("$(rate 18097)")
    new+=("$(rate 18098)")
    echo "round $round: old ${old[-1]} req/s, new ${new[-1]} req/s" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
old_median=$(median "${old[@]}")
new_median=$(median "${new[@]}")
echo "| build | login req/s, c=$CONCURRENCY, median of $ROUNDS x $DURATION |"
echo "|---|---|"
echo "| old ($1) | $old_median |"
echo "| new ($2) | $new_median |"
awk -v o="$old_median" -v n="$new_median" 'BEGIN { printf "new/old: %.2fx\n", n / o }'
