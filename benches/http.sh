#!/usr/bin/env bash
# Side-by-side HTTP throughput benchmark: the tiny_http 0.12 hello-world example
# (the HTTP layer the original design named) against the auth server's own
# HTTP/1.1 layer, on the same machine, in one run, with the same wrk settings.
#
# Targets (select with BENCH_TARGETS, comma-separated, default all three):
#   tiny      examples/tiny_http_hello     GET /             200 {"status":"ok"}
#   healthz   target/release/auth-server   GET /healthz      one SELECT 1 per request
#   notfound  target/release/auth-server   GET /nonexistent  static 404 problem+json, no DB
#
# The targets are measured alternately (ABCABCABC) so that drift on a shared
# machine hits all of them alike; the table reports the median of the rounds.
# wrk runs on the same cores as the servers, so the figures are for comparing
# the targets with each other, not absolute capacity.
#
# Environment (all optional):
#   BENCH_TARGETS        tiny,healthz,notfound
#   BENCH_DURATION       10s    wrk duration of each measured run
#   BENCH_WARMUP         3s     wrk duration of the one warm-up run per target
#   BENCH_ROUNDS         3
#   BENCH_CONNECTIONS    64
#   BENCH_THREADS        2
#   BENCH_DATABASE_URL   mysql://root@127.0.0.1:3306/auth_bench
#   BENCH_TINY_PORT      18090
#   BENCH_AUTH_PORT      18091
#   BENCH_SKIP_BUILD     1 to use the binaries already built
#   CARGO_TARGET_DIR     honoured when looking for the binaries
#   BENCH_TINY_BIN       path of the tiny_http example binary (implies it is built)
#   BENCH_AUTH_BIN       path of the auth-server binary (implies it is built)
#
# The auth server gets BIND_ADDR, DATABASE_URL, LOG_LEVEL=warn and a random
# TOKEN_SECRET; the rest of its configuration comes from this environment.
#
# Example: BENCH_DURATION=5s BENCH_TARGETS=tiny benches/http.sh
set -euo pipefail

cd "$(dirname "$0")/.."

TARGETS=${BENCH_TARGETS:-tiny,healthz,notfound}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
ROUNDS=${BENCH_ROUNDS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
DATABASE_URL_BENCH=${BENCH_DATABASE_URL:-mysql://root@127.0.0.1:3306/auth_bench}
TINY_PORT=${BENCH_TINY_PORT:-18090}
AUTH_PORT=${BENCH_AUTH_PORT:-18091}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LUA_SCRIPT=benches/wrk/report.lua

TINY_BIN=${BENCH_TINY_BIN:-$TARGET_DIR/release/examples/tiny_http_hello}
AUTH_BIN=${BENCH_AUTH_BIN:-$TARGET_DIR/release/auth-server}

WORK_DIR=$(mktemp -d /tmp/http-bench.XXXXXX)
STARTED_PIDS=()

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        # Give each server 5 s to exit on SIGTERM before SIGKILL.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
    echo "http.sh: $*" >&2
    exit 1
}

wants() {
    [[ ",$TARGETS," == *",$1,"* ]]
}

for target in ${TARGETS//,/ }; do
    case $target in
        tiny | healthz | notfound) ;;
        *) die "unknown target '$target' in BENCH_TARGETS (known: tiny,healthz,notfound)" ;;
    esac
done
command -v wrk >/dev/null || die "wrk not found (apt-get install -y wrk)"
command -v curl >/dev/null || die "curl not found"
[[ -f $LUA_SCRIPT ]] || die "$LUA_SCRIPT not found"

need_auth=0
if wants healthz || wants notfound; then
    need_auth=1
fi

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    if wants tiny && [[ -z ${BENCH_TINY_BIN:-} ]]; then
        cargo build --release --example tiny_http_hello >&2
    fi
    if [[ $need_auth == 1 && -z ${BENCH_AUTH_BIN:-} ]]; then
        cargo build --release >&2
    fi
fi

# Refuse to start if something already answers on a port: the run would
# otherwise measure a stale server instead of the one just built.
port_is_free() {
    ! curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/"
}

# Waits up to $3 seconds for $2 to answer 2xx, failing early if process $1 died.
wait_until_up() {
    local pid=$1 url=$2 seconds=$3 log=$4
    local deadline=$((SECONDS + seconds))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$log" >&2 || true
            die "server (pid $pid) exited before answering $url"
        fi
        if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    tail -n 20 "$log" >&2 || true
    die "$url did not answer within ${seconds}s"
}

# Creates the database named in a mysql://user[:password]@host[:port]/db URL.
# A password with URL escapes in it is not decoded: keep bench passwords plain.
create_database() {
    local url=$1
    local re='^mysql://([^:@/]+)(:([^@]*))?@([^:/?]+)(:([0-9]+))?/([A-Za-z0-9_]+)'
    [[ $url =~ $re ]] || die "cannot parse BENCH_DATABASE_URL '$url' (want mysql://user[:pass]@host[:port]/db)"
    local user=${BASH_REMATCH[1]} password=${BASH_REMATCH[3]} host=${BASH_REMATCH[4]}
    local port=${BASH_REMATCH[6]:-3306} db=${BASH_REMATCH[7]}
    command -v mysql >/dev/null || die "mysql client not found (apt-get install -y mariadb-client)"
    MYSQL_PWD=$password mysql -h"$host" -P"$port" -u"$user" \
        -e "CREATE DATABASE IF NOT EXISTS \`$db\`" ||
        die "could not create database $db on $host:$port"
}

declare -A URL PID_OF
if wants tiny; then
    [[ -x $TINY_BIN ]] || die "$TINY_BIN not built"
    port_is_free "$TINY_PORT" || die "port $TINY_PORT already answers; set BENCH_TINY_PORT"
    "$TINY_BIN" "127.0.0.1:$TINY_PORT" >"$WORK_DIR/tiny.log" 2>&1 &
    PID_OF[tiny]=$!
    STARTED_PIDS+=("$!")
    URL[tiny]=http://127.0.0.1:$TINY_PORT/
    wait_until_up "${PID_OF[tiny]}" "${URL[tiny]}" 10 "$WORK_DIR/tiny.log"
fi
if [[ $need_auth == 1 ]]; then
    [[ -x $AUTH_BIN ]] || die "$AUTH_BIN not built"
    port_is_free "$AUTH_PORT" || die "port $AUTH_PORT already answers; set BENCH_AUTH_PORT"
    create_database "$DATABASE_URL_BENCH"
    # The server refuses to start without a token secret; a fresh random one
    # per run is enough for a benchmark, and it is never printed. Any other
    # auth-server setting can be given through the caller's environment.
    token_secret=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    BIND_ADDR=127.0.0.1:$AUTH_PORT DATABASE_URL=$DATABASE_URL_BENCH LOG_LEVEL=warn \
        TOKEN_SECRET=$token_secret "$AUTH_BIN" >"$WORK_DIR/auth.log" 2>&1 &
    PID_OF[healthz]=$!
    PID_OF[notfound]=$!
    STARTED_PIDS+=("$!")
    URL[healthz]=http://127.0.0.1:$AUTH_PORT/healthz
    URL[notfound]=http://127.0.0.1:$AUTH_PORT/nonexistent
    wait_until_up "${PID_OF[healthz]}" "${URL[healthz]}" 30 "$WORK_DIR/auth.log"
fi

selected=()
for target in tiny healthz notfound; do
    if wants "$target"; then
        selected+=("$target")
    fi
done

WRK_ARGS=(-t"$THREADS" -c"$CONNECTIONS" --latency -s "$LUA_SCRIPT")

# Runs wrk once against $1 for $2; appends "target round key=value..." to results.
run_wrk() {
    local target=$1 duration=$2 round=$3
    local out=$WORK_DIR/wrk-$target-$round.txt
    wrk "${WRK_ARGS[@]}" -d"$duration" "${URL[$target]}" >"$out" 2>&1 ||
        die "wrk failed against ${URL[$target]}: $(tail -n 5 "$out")"
    if ! kill -0 "${PID_OF[$target]}" 2>/dev/null; then
        die "server for $target died during the run; see $WORK_DIR"
    fi
    local line
    line=$(grep '^WRK_RESULT ' "$out") || die "no WRK_RESULT line in $out"
    if [[ $round != warmup ]]; then
        echo "$target $round ${line#WRK_RESULT }" >>"$WORK_DIR/results.txt"
    fi
}

echo "warming up ($WARMUP per target)..." >&2
for target in "${selected[@]}"; do
    run_wrk "$target" "$WARMUP" warmup
done
for round in $(seq "$ROUNDS"); do
    for target in "${selected[@]}"; do
        echo "round $round/$ROUNDS: $target (${URL[$target]}) for $DURATION..." >&2
        run_wrk "$target" "$DURATION" "$round"
    done
done

# Prints field $2 (e.g. rps) of every round of target $1, one per line.
field_of() {
    awk -v t="$1" -v k="$2" '$1 == t { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' \
        "$WORK_DIR/results.txt"
}

median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}

sum() {
    awk '{ s += $1 } END { print s + 0 }'
}

us_to_ms() {
    awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'
}

describe() {
    case $1 in
        tiny) echo "tiny_http 0.12 hello (\`GET /\`)" ;;
        healthz) echo "auth-server \`GET /healthz\` (SELECT 1)" ;;
        notfound) echo "auth-server \`GET /nonexistent\` (static 404)" ;;
    esac
}

tiny_rps=
if wants tiny; then
    tiny_rps=$(field_of tiny rps | median)
fi

echo
echo "## HTTP benchmark: auth-server vs tiny_http"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- nproc: $(nproc); CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "- kernel: $(uname -sr)"
echo "- wrk: $(wrk -v 2>&1 | head -n 1)"
echo "- command (per target and round): \`wrk ${WRK_ARGS[*]} -d$DURATION <URL>\`"
echo "- one ${WARMUP} warm-up per target, then $ROUNDS rounds alternating $(
    IFS=,
    echo "${selected[*]}"
); median of the rounds shown"
echo "- wrk shares the machine's cores with the server under test"
echo
echo "| target | req/s (median) | p50 ms | p99 ms | req/s vs tiny_http | socket errors | non-2xx/3xx |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for target in "${selected[@]}"; do
    rps=$(field_of "$target" rps | median)
    p50=$(field_of "$target" p50_us | median)
    p99=$(field_of "$target" p99_us | median)
    socket_errors=$(
        for k in connect_errors read_errors write_errors timeouts; do field_of "$target" "$k"; done | sum
    )
    non_ok=$(field_of "$target" non_2xx_3xx | sum)
    ratio=n/a
    if [[ -n $tiny_rps ]]; then
        ratio=$(awk -v a="$rps" -v b="$tiny_rps" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }')
    fi
    printf '| %s | %.0f | %s | %s | %s | %s | %s |\n' "$(describe "$target")" "$rps" \
        "$(us_to_ms "$p50")" "$(us_to_ms "$p99")" "$ratio" "$socket_errors" "$non_ok"
done
if wants notfound; then
    echo
    echo "non-2xx/3xx of \`/nonexistent\` are its expected 404s."
fi
echo
echo "Per run:"
echo
echo "| round | target | req/s | p50 ms | p99 ms |"
echo "| ---: | --- | ---: | ---: | ---: |"
while read -r target round rest; do
    declare -A kv=()
    for pair in $rest; do
        kv[${pair%%=*}]=${pair#*=}
    done
    printf '| %s | %s | %.0f | %s | %s |\n' "$round" "$target" "${kv[rps]}" \
        "$(us_to_ms "${kv[p50_us]}")" "$(us_to_ms "${kv[p99_us]}")"
    unset kv
done <"$WORK_DIR/results.txt"
echo
echo "raw wrk output: $WORK_DIR" >&2
