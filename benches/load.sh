#!/usr/bin/env bash
# Load benchmark of the auth server's real endpoints, in one run on one
# machine, next to a micro-benchmark of the cryptography they are built on,
# so that each HTTP figure can be read against what the CPU can do at all.
#
# Steps:
#   1. waits (up to BENCH_LOAD_WAIT s) for the 1-minute load average to drop
#      to BENCH_MAX_LOAD, since the machine may be shared; records `uptime`;
#   2. builds the release binary and benches/crypto.rs, then runs the latter:
#      Argon2id hashes per second per core, token sign and verify ns/op;
#   3. drops and re-creates the database (its name must contain "bench" or
#      "load", as a guard against pointing this at real data), starts the
#      server with a random TOKEN_SECRET, RATE_LIMIT_BURST=0 (limiter off)
#      and LOG_LEVEL=warn, registers BENCH_USERS accounts and logs a few in
#      for their tokens;
#   4. runs the scenarios below with wrk (one warm-up, then BENCH_ROUNDS
#      measured runs each; the median is reported), sampling the server's
#      VmRSS and thread count every 100 ms during each, and accounting for
#      the CPU time that other processes took meanwhile (a run disturbed by
#      other jobs is discarded, listed, and run again);
#   5. prints a markdown report on stdout: machine, parameters, every figure
#      with the command that produced it, and each target MET or MISSED.
#
# Scenarios (BENCH_SCENARIOS, comma-separated; default all, in this order):
#   healthz    GET /healthz, keep-alive, c=HIGH                report.lua
#   churn      GET /healthz with Connection: close, c=HIGH     report.lua
#   me         GET /auth/me with a Bearer token, c=LOW and c=HIGH  me.lua
#   login      POST /auth/login at c=LOW and at c=HIGH         login.lua
#   register   POST /auth/register, new email each, c=LOW, c=HIGH  register.lua
#   mixed      GET /auth/me at c=HIGH while a login flood at c=HIGH runs
#   flood      BENCH_FLOOD_IDLE idle + BENCH_FLOOD_SLOW slowloris connections
#              (benches/flood.py), then BENCH_PROBES new clients time
#              GET /healthz with curl, one every 0.5 s
#
# Environment (all optional):
#   BENCH_DURATION          10s    each measured wrk run (whole seconds)
#   BENCH_WARMUP            3s     the warm-up run of each scenario
#   BENCH_ROUNDS            3
#   BENCH_THREADS           2      wrk threads
#   BENCH_CONCURRENCY_LOW   8
#   BENCH_CONCURRENCY_HIGH  64
#   BENCH_USERS             200    accounts for the login flood
#   BENCH_FLOOD_IDLE        3000
#   BENCH_FLOOD_SLOW        500
#   BENCH_PROBES            20
#   BENCH_MAX_LOAD          1.5
#   BENCH_LOAD_WAIT         600    seconds to wait for the load to drop, then run anyway
#   BENCH_MAX_OTHER_CPU     15     a measured run in which other processes took more than
#                                  this % of the CPUs is discarded and run again, after
#                                  waiting for the machine to be quiet ...
#   BENCH_RETRIES           2      ... at most this many times per round
#   BENCH_DATABASE_URL      mysql://root@127.0.0.1:3306/auth_load  (DROPPED and re-created)
#   BENCH_PORT              18093
#   BENCH_SKIP_BUILD        1 to use binaries already built
#   BENCH_AUTH_BIN          the auth-server binary (default target/release/auth-server)
#   BENCH_CRYPTO_BIN        the crypto bench binary (default: the one cargo builds,
#                           or with BENCH_SKIP_BUILD=1 the newest target/release/deps/crypto-*)
#   CARGO_TARGET_DIR        honoured when looking for the binaries
#
# The server gets BIND_ADDR, DATABASE_URL, TOKEN_SECRET, RATE_LIMIT_BURST=0 and
# LOG_LEVEL=warn; every other setting (HASH_CONCURRENCY, MAX_CONNECTIONS,
# ARGON2_*, ...) comes from the caller's environment, and the report shows
# the values in effect. The crypto bench reads the same ARGON2_* variables.
#
# Example: BENCH_DURATION=5s BENCH_ROUNDS=1 BENCH_SCENARIOS=login,me benches/load.sh
set -euo pipefail

cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-3s}
ROUNDS=${BENCH_ROUNDS:-3}
THREADS=${BENCH_THREADS:-2}
LOW=${BENCH_CONCURRENCY_LOW:-8}
HIGH=${BENCH_CONCURRENCY_HIGH:-64}
USERS=${BENCH_USERS:-200}
FLOOD_IDLE=${BENCH_FLOOD_IDLE:-3000}
FLOOD_SLOW=${BENCH_FLOOD_SLOW:-500}
PROBES=${BENCH_PROBES:-20}
MAX_LOAD=${BENCH_MAX_LOAD:-1.5}
LOAD_WAIT=${BENCH_LOAD_WAIT:-600}
MAX_OTHER=${BENCH_MAX_OTHER_CPU:-15}
RETRIES=${BENCH_RETRIES:-2}
SCENARIOS=${BENCH_SCENARIOS:-healthz,churn,me,login,register,mixed,flood}
DATABASE_URL_BENCH=${BENCH_DATABASE_URL:-mysql://root@127.0.0.1:3306/auth_load}
PORT=${BENCH_PORT:-18093}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
AUTH_BIN=${BENCH_AUTH_BIN:-$TARGET_DIR/release/auth-server}
CRYPTO_BIN=${BENCH_CRYPTO_BIN:-}
HASH_SLOTS=${HASH_CONCURRENCY:-$(nproc)}
MAX_CONN=${MAX_CONNECTIONS:-1024}

# Targets (issue 6).
TARGET_LOGIN_RATIO=0.85
TARGET_MIXED_P99_MS=50
TARGET_RSS_MIB=150
TARGET_PROBE_MS=100

# Read by the wrk Lua scripts.
export BENCH_USERS=$USERS
export BENCH_USER_PREFIX=user
export BENCH_PASSWORD=Load-bench-pw-7Q

WORK_DIR=$(mktemp -d /tmp/load-bench.XXXXXX)
STARTED_PIDS=()

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        # Give each process 5 s to exit on SIGTERM before SIGKILL.
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
# Removes a process that has been waited for from STARTED_PIDS, so that the
# cleanup never signals a PID the system may since have given to another.
forget_pid() {
    local pid kept=()
    for pid in "${STARTED_PIDS[@]}"; do
        [[ $pid == "$1" ]] || kept+=("$pid")
    done
    STARTED_PIDS=("${kept[@]}")
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

die() {
    echo "load.sh: $*" >&2
    exit 1
}

log() {
    echo "load.sh: $*" >&2
}

wants() {
    [[ ",$SCENARIOS," == *",$1,"* ]]
}

seconds_of() {
    [[ $1 =~ ^([0-9]+)s?$ ]] || die "durations are whole seconds like 10s, got '$1'"
    echo "${BASH_REMATCH[1]}"
}

for scenario in ${SCENARIOS//,/ }; do
    case $scenario in
        healthz | churn | me | login | register | mixed | flood) ;;
        *) die "unknown scenario '$scenario' (known: healthz,churn,me,login,register,mixed,flood)" ;;
    esac
done
DURATION_S=$(seconds_of "$DURATION")
WARMUP_S=$(seconds_of "$WARMUP")
for tool in wrk curl python3 mysql ss; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
for script in report common login register me; do
    [[ -f benches/wrk/$script.lua ]] || die "benches/wrk/$script.lua not found"
done
[[ -f benches/flood.py ]] || die "benches/flood.py not found"

load1() {
    cut -d' ' -f1 /proc/loadavg
}

# Waits until the 1-minute load average is at most MAX_LOAD, for at most
# LOAD_WAIT seconds; after that it runs anyway and the report says so.
LOAD_WAITED=0
LOAD_GAVE_UP=0
wait_for_quiet_machine() {
    local start=$SECONDS
    while awk -v l="$(load1)" -v m="$MAX_LOAD" 'BEGIN { exit !(l > m) }'; do
        if ((SECONDS - start >= LOAD_WAIT)); then
            log "load average still $(load1) > $MAX_LOAD after ${LOAD_WAIT}s; running anyway"
            LOAD_GAVE_UP=1
            break
        fi
        log "load average $(load1) > $MAX_LOAD (machine busy); waiting..."
        sleep 15
    done
    LOAD_WAITED=$((SECONDS - start))
}

# ---------------------------------------------------------------- build

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    if [[ -z ${BENCH_AUTH_BIN:-} ]]; then
        cargo build --release >&2
    fi
    if [[ -z $CRYPTO_BIN ]]; then
        CRYPTO_BIN=$(
            cargo bench --bench crypto --no-run --message-format=json |
                python3 -c '
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "crypto" and msg.get("executable"):
        print(msg["executable"])'
        )
    fi
fi
if [[ -z $CRYPTO_BIN ]]; then
    CRYPTO_BIN=$(find "$TARGET_DIR/release/deps" -maxdepth 1 -type f -name 'crypto-*' ! -name '*.*' \
        -perm -u+x -printf '%T@ %p\n' 2>/dev/null | sort -rn | head -n 1 | cut -d' ' -f2-)
fi
[[ -n $CRYPTO_BIN && -x $CRYPTO_BIN ]] ||
    die "crypto bench not built (cargo bench --bench crypto --no-run, or set BENCH_CRYPTO_BIN)"
[[ -x $AUTH_BIN ]] || die "$AUTH_BIN not built"

# ---------------------------------------------------------------- CPU accounting

# The load average cannot tell whether other jobs competed with a run: the
# server's own busy threads count in it (64 runnable connection threads make
# a load of 60 by themselves). So each run also accounts for the machine's CPU
# time: what went to the server, the database, wrk and the kernel's network
# softirq work is ours; the rest of the busy time went to other processes.
SERVER_PID=
CLK_TCK=$(getconf CLK_TCK)
DB_PID=$(pgrep -x mariadbd || pgrep -x mysqld || true)
DB_PID=${DB_PID%%$'\n'*}

# "utime stime" of process $1 in clock ticks, all its threads (exited ones
# too) together; "0 0" if it is gone or not given.
proc_ticks() {
    local line rest
    if [[ -z $1 ]] || ! read -r line 2>/dev/null <"/proc/$1/stat"; then
        echo 0 0
        return
    fi
    rest=${line##*) }
    # shellcheck disable=SC2086 # split the fields on purpose
    set -- $rest
    echo "${12} ${13}"
}

# "total idle softirq server_user server_system db_user db_system" in clock
# ticks, summed over all CPUs.
cpu_snapshot() {
    local user nice system idle iowait irq softirq steal rest
    read -r _ user nice system idle iowait irq softirq steal rest </proc/stat
    echo "$((user + nice + system + idle + iowait + irq + softirq + steal)) $((idle + iowait)) $softirq" \
        "$(proc_ticks "$SERVER_PID") $(proc_ticks "$DB_PID")"
}

# From two snapshots and wrk's "user system" seconds, prints
# "idle_pct=F other_pct=F server_pct=F server_sys_pct=F": the share of all
# CPUs left idle; the share used by processes other than the server, the
# database and wrk (the sampler's few forks per second included); the share
# used by the server; and how much of the server's time was in the kernel.
cpu_shares() {
    awk -v hz="$CLK_TCK" -v wrk="$3" -v b="$1" -v a="$2" 'BEGIN {
        split(b, x, " "); split(a, y, " "); split(wrk, w, " ")
        total = y[1] - x[1]; idle = y[2] - x[2]; softirq = y[3] - x[3]
        server = (y[4] - x[4]) + (y[5] - x[5])
        ours = softirq + server + (y[6] - x[6]) + (y[7] - x[7]) + (w[1] + w[2]) * hz
        other = total - idle - ours
        if (other < 0) other = 0
        if (total <= 0) total = 1
        printf "idle_pct=%.0f other_pct=%.0f server_pct=%.0f server_sys_pct=%.0f", 100 * idle / total,
            100 * other / total, 100 * server / total, (server > 0 ? 100 * (y[5] - x[5]) / server : 0)
    }'
}

# Percentage of both CPUs busy over the next 3 s, whoever uses them.
busy_pct() {
    local before after
    before=$(cpu_snapshot)
    sleep 3
    after=$(cpu_snapshot)
    awk -v b="$before" -v a="$after" 'BEGIN {
        split(b, x, " "); split(a, y, " "); total = y[1] - x[1]
        printf "%.0f", (total > 0 ? 100 * (1 - (y[2] - x[2]) / total) : 0) }'
}

# Between runs (the server idle), waits up to LOAD_WAIT s for the CPUs to be
# at most 10% busy.
wait_for_quiet_cpus() {
    local start=$SECONDS busy
    while busy=$(busy_pct) && ((busy > 10)); do
        if ((SECONDS - start >= LOAD_WAIT)); then
            log "CPUs still ${busy}% busy after ${LOAD_WAIT}s; going on"
            return
        fi
        log "CPUs ${busy}% busy with other work; waiting..."
        sleep 10
    done
}

# ---------------------------------------------------------------- machine

wait_for_quiet_machine
wait_for_quiet_cpus
UPTIME_BEFORE=$(uptime)
log "uptime before: $UPTIME_BEFORE"

# ---------------------------------------------------------------- crypto

log "crypto micro-benchmark ($CRYPTO_BIN)..."
before=$(cpu_snapshot)
crypto_cpu=$(
    TIMEFORMAT='%3U %3S'
    { time "$CRYPTO_BIN" >"$WORK_DIR/crypto.txt" 2>&1; } 2>&1
) || die "crypto bench failed: $(tail -n 5 "$WORK_DIR/crypto.txt")"
CRYPTO_SHARES=$(cpu_shares "$before" "$(cpu_snapshot)" "$crypto_cpu")
CRYPTO_LINE=$(grep '^CRYPTO_RESULT ' "$WORK_DIR/crypto.txt") || die "no CRYPTO_RESULT in $WORK_DIR/crypto.txt"
declare -A CRYPTO=()
for pair in ${CRYPTO_LINE#CRYPTO_RESULT }; do
    CRYPTO[${pair%%=*}]=${pair#*=}
done

# ---------------------------------------------------------------- server

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

# Drops and re-creates the database named in a mysql://user[:password]@host[:port]/db
# URL, so every run starts from empty tables. A password with URL escapes in it
# is not decoded: keep bench passwords plain.
DB_VERSION=unknown
fresh_database() {
    local url=$1
    local re='^mysql://([^:@/]+)(:([^@]*))?@([^:/?]+)(:([0-9]+))?/([A-Za-z0-9_]+)'
    [[ $url =~ $re ]] || die "cannot parse BENCH_DATABASE_URL '$url' (want mysql://user[:pass]@host[:port]/db)"
    local user=${BASH_REMATCH[1]} password=${BASH_REMATCH[3]} host=${BASH_REMATCH[4]}
    local port=${BASH_REMATCH[6]:-3306} db=${BASH_REMATCH[7]}
    [[ $db == *bench* || $db == *load* ]] ||
        die "refusing to drop database '$db': its name must contain 'bench' or 'load'"
    MYSQL_PWD=$password mysql -h"$host" -P"$port" -u"$user" \
        -e "DROP DATABASE IF EXISTS \`$db\`; CREATE DATABASE \`$db\`" ||
        die "could not re-create database $db on $host:$port"
    DB_VERSION=$(MYSQL_PWD=$password mysql -h"$host" -P"$port" -u"$user" -N -B -e 'SELECT VERSION()')
    DB_WHERE="$host:$port/$db"
}

port_is_free "$PORT" || die "port $PORT already answers; set BENCH_PORT"
fresh_database "$DATABASE_URL_BENCH"
BASE_URL=http://127.0.0.1:$PORT
# A fresh random secret per run, the same for every server process of the
# run so that tokens obtained once stay valid; it is never printed.
TOKEN_SECRET_BENCH=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
SERVER_RUNS=0

# Every scenario gets a server process of its own, so that the memory and
# threads reported for it are its own and not what earlier scenarios left.
start_server() {
    SERVER_RUNS=$((SERVER_RUNS + 1))
    local log=$WORK_DIR/server-$SERVER_RUNS.log
    BIND_ADDR=127.0.0.1:$PORT DATABASE_URL=$DATABASE_URL_BENCH LOG_LEVEL=warn RATE_LIMIT_BURST=0 \
        TOKEN_SECRET=$TOKEN_SECRET_BENCH "$AUTH_BIN" >"$log" 2>&1 &
    SERVER_PID=$!
    STARTED_PIDS+=("$SERVER_PID")
    wait_until_up "$SERVER_PID" "$BASE_URL/healthz" 60 "$log"
}

# Stops the server with SIGTERM (graceful), SIGKILL after 15 s.
stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 150); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    forget_pid "$SERVER_PID"
}

start_server

# Reads VmRSS (KiB) and Threads of the server into RSS_KIB and THREAD_COUNT,
# with bash builtins only, so that sampling every 100 ms forks nothing but sleep.
read_status() {
    RSS_KIB=0
    THREAD_COUNT=0
    local key value rest
    while read -r key value rest; do
        case $key in
            VmRSS:) RSS_KIB=$value ;;
            Threads:) THREAD_COUNT=$value ;;
        esac
    done <"/proc/$SERVER_PID/status"
}

sleep 1
read_status
IDLE_RSS_KIB=$RSS_KIB
IDLE_THREADS=$THREAD_COUNT

log "registering $USERS accounts and logging in for tokens..."
TOKENS_FILE=$WORK_DIR/tokens
export BENCH_TOKENS_FILE=$TOKENS_FILE
python3 - "$BASE_URL" "$USERS" "$BENCH_USER_PREFIX" "$BENCH_PASSWORD" 8 "$TOKENS_FILE" <<'PY' ||
import json
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

base, users, prefix, password, tokens, out = sys.argv[1:7]
users, tokens = int(users), int(tokens)


def post(path, body):
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def register(i):
    status, body = post("/auth/register", {"email": f"{prefix}{i}@load.example", "password": password})
    if status != 201:
        raise RuntimeError(f"registering account {i}: HTTP {status}: {body}")


with ThreadPoolExecutor(8) as pool:
    list(pool.map(register, range(1, users + 1)))
lines = []
for i in range(1, tokens + 1):
    status, body = post("/auth/login", {"email": f"{prefix}{i}@load.example", "password": password})
    if status != 200:
        raise RuntimeError(f"logging in account {i}: HTTP {status}: {body}")
    lines.append(body["token"])
with open(out, "w") as f:
    f.write("\n".join(lines) + "\n")
PY
    die "could not set up the accounts"
stop_server

# ---------------------------------------------------------------- sampling

# Samples the server every 100 ms into $1 ("rss_kib threads" per line) until killed.
# sample_stop adds the kernel's own peak (VmHWM) of the server process, which
# lives for one scenario, as one more line.
sampler() {
    local out=$1
    while kill -0 "$SERVER_PID" 2>/dev/null; do
        read_status 2>/dev/null || break
        echo "$RSS_KIB $THREAD_COUNT" >>"$out"
        sleep 0.1
    done
}

SAMPLER_PID=
SAMPLE_NAME=
sample_start() {
    SAMPLE_NAME=$1
    sampler "$WORK_DIR/samples-$1.txt" &
    SAMPLER_PID=$!
    STARTED_PIDS+=("$SAMPLER_PID")
}

sample_stop() {
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    forget_pid "$SAMPLER_PID"
    local hwm
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status")
    echo "${hwm:-0} 0" >>"$WORK_DIR/samples-$SAMPLE_NAME.txt"
}

# Prints "peak_rss_kib peak_threads" of scenario $1.
peaks_of() {
    awk '{ if ($1 > r) r = $1; if ($2 > t) t = $2 } END { print r + 0, t + 0 }' "$WORK_DIR/samples-$1.txt"
}

# ---------------------------------------------------------------- wrk

WRK_BASE=(wrk -t"$THREADS" --timeout 10s --latency)
declare -A CMD=() DESCRIBE=()
ORDER=()
RUN_SEQ=0

# Records what scenario $1 is and the exact command of its measured runs.
define() {
    ORDER+=("$1")
    DESCRIBE[$1]=$2
    CMD[$1]=$3
}

# Runs wrk for scenario $1, round $2 (or "warmup"), duration $3 s, concurrency
# $4, Lua script $5, URL $6, extra wrk arguments after that. Appends
# "scenario round key=value..." to results.txt, WRK_STATUS counts included.
run_wrk() {
    local name=$1 round=$2 seconds=$3 conns=$4 script=$5 url=$6
    shift 6
    local out=$WORK_DIR/wrk-$name-$round.txt load before after wrk_cpu
    load=$(load1)
    RUN_SEQ=$((RUN_SEQ + 1))
    before=$(cpu_snapshot)
    # bash's time keyword gives wrk's own CPU seconds (user, system).
    wrk_cpu=$(
        TIMEFORMAT='%3U %3S'
        { time BENCH_RUN_ID=$$-$RUN_SEQ "${WRK_BASE[@]}" -c"$conns" -d"${seconds}s" \
            -s "benches/wrk/$script" "$@" "$url" >"$out" 2>&1; } 2>&1
    ) || die "wrk failed against $url: $(tail -n 5 "$out")"
    after=$(cpu_snapshot)
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server died during $name; see $WORK_DIR"
    local line status=
    line=$(grep '^WRK_RESULT ' "$out") || die "no WRK_RESULT line in $out"
    if grep -q '^WRK_STATUS ' "$out"; then
        status=$(grep '^WRK_STATUS ' "$out" | sed 's/^WRK_STATUS //; s/\([0-9]*\)=/s\1=/g')
    fi
    if [[ $round != warmup ]]; then
        echo "$name $round ${line#WRK_RESULT } $status load1=$load $(cpu_shares "$before" "$after" "$wrk_cpu")" \
            >>"$WORK_DIR/results.txt"
    fi
}

# Runs one scenario: a warm-up and ROUNDS measured runs, sampled. A run in
# which other processes took more than MAX_OTHER % of the CPUs moves to
# discarded.txt and is run again once the machine is quiet (RETRIES times
# at most; the last attempt is kept whatever it measured).
scenario() {
    local name=$1 conns=$2 script=$3 url=$4 other attempt
    shift 4
    log "$name: warm-up ${WARMUP_S}s, then $ROUNDS x ${DURATION_S}s (c=$conns)..."
    start_server
    sample_start "$name"
    run_wrk "$name" warmup "$WARMUP_S" "$conns" "$script" "$url" "$@"
    for round in $(seq "$ROUNDS"); do
        for attempt in $(seq 0 "$RETRIES"); do
            run_wrk "$name" "$round" "$DURATION_S" "$conns" "$script" "$url" "$@"
            other=$(tail -n 1 "$WORK_DIR/results.txt" | sed -n 's/.*other_pct=\([0-9]*\).*/\1/p')
            if ((${other:-0} <= MAX_OTHER || attempt == RETRIES)); then
                break
            fi
            log "$name round $round: other processes took ${other}% of the CPUs; discarding the run"
            tail -n 1 "$WORK_DIR/results.txt" >>"$WORK_DIR/discarded.txt"
            sed -i '$d' "$WORK_DIR/results.txt"
            wait_for_quiet_cpus
        done
    done
    sample_stop
    stop_server
}

wrk_cmd() {
    local conns=$1 script=$2 url=$3
    shift 3
    echo "${WRK_BASE[*]} -c$conns -d${DURATION_S}s -s benches/wrk/$script $* $url" | tr -s ' '
}

if wants healthz; then
    define healthz "\`GET /healthz\` keep-alive, c=$HIGH" "$(wrk_cmd "$HIGH" report.lua "$BASE_URL/healthz")"
    scenario healthz "$HIGH" report.lua "$BASE_URL/healthz"
fi
if wants churn; then
    define churn "\`GET /healthz\`, \`Connection: close\` (a new connection and thread per request), c=$HIGH" \
        "$(wrk_cmd "$HIGH" report.lua "$BASE_URL/healthz" "-H 'Connection: close'")"
    scenario churn "$HIGH" report.lua "$BASE_URL/healthz" -H 'Connection: close'
fi
if wants me; then
    for c in "$LOW" "$HIGH"; do
        define "me-$c" "\`GET /auth/me\` (Bearer), c=$c" \
            "BENCH_TOKENS_FILE=tokens $(wrk_cmd "$c" me.lua "$BASE_URL/auth/me")"
        scenario "me-$c" "$c" me.lua "$BASE_URL/auth/me"
    done
fi
if wants login; then
    for c in "$LOW" "$HIGH"; do
        define "login-$c" "\`POST /auth/login\`, $USERS accounts at random, c=$c" \
            "BENCH_USERS=$USERS $(wrk_cmd "$c" login.lua "$BASE_URL/auth/login")"
        scenario "login-$c" "$c" login.lua "$BASE_URL/auth/login"
    done
fi
if wants register; then
    for c in "$LOW" "$HIGH"; do
        define "register-$c" "\`POST /auth/register\`, a new email per request, c=$c" \
            "$(wrk_cmd "$c" register.lua "$BASE_URL/auth/register")"
        scenario "register-$c" "$c" register.lua "$BASE_URL/auth/register"
    done
fi
if wants mixed; then
    # The login flood starts 2 s before the /auth/me run and ends 2 s after it,
    # so every /auth/me request meets a full hashing queue.
    flood_s=$((DURATION_S + 4))
    define mixed-me "\`GET /auth/me\` c=$HIGH **during** a login flood c=$HIGH" \
        "BENCH_TOKENS_FILE=tokens $(wrk_cmd "$HIGH" me.lua "$BASE_URL/auth/me"), started 2 s into the next command"
    define mixed-login "the login flood running meanwhile" \
        "$(wrk_cmd "$HIGH" login.lua "$BASE_URL/auth/login" | sed "s/-d${DURATION_S}s/-d${flood_s}s/")"
    log "mixed: $ROUNDS x (login flood ${flood_s}s with GET /auth/me ${DURATION_S}s inside)..."
    start_server
    sample_start mixed
    for round in $(seq "$ROUNDS"); do
        run_wrk mixed-login "$round" "$flood_s" "$HIGH" login.lua "$BASE_URL/auth/login" &
        login_pid=$!
        STARTED_PIDS+=("$login_pid")
        sleep 2
        run_wrk mixed-me "$round" "$DURATION_S" "$HIGH" me.lua "$BASE_URL/auth/me"
        wait "$login_pid" || die "the login flood of round $round failed"
        forget_pid "$login_pid"
    done
    sample_stop
    stop_server
    cp "$WORK_DIR/samples-mixed.txt" "$WORK_DIR/samples-mixed-me.txt"
    cp "$WORK_DIR/samples-mixed.txt" "$WORK_DIR/samples-mixed-login.txt"
fi

# ---------------------------------------------------------------- flood

# Times $1 new-client GET /healthz requests with curl, one every 0.5 s; appends
# "http_code seconds" lines to $2.
probe() {
    local count=$1 out=$2
    for _ in $(seq "$count"); do
        curl -s -o /dev/null --max-time 10 -w '%{http_code} %{time_total}\n' "$BASE_URL/healthz" >>"$out" || true
        sleep 0.5
    done
}

# Prints "ok median_ms max_ms" of a probe file.
probe_stats() {
    local ok
    ok=$(awk '$1 == 200 { n++ } END { print n + 0 }' "$1")
    awk '{ print $2 * 1000 }' "$1" | sort -g |
        awk -v ok="$ok" '{ v[NR] = $1 } END { printf "%d %.1f %.1f\n", ok, v[int((NR + 1) / 2)], v[NR] }'
}

if wants flood; then
    start_server
    log "flood: $PROBES probes without flood..."
    probe "$PROBES" "$WORK_DIR/probe-quiet.txt"
    log "flood: opening $FLOOD_IDLE idle + $FLOOD_SLOW slowloris connections..."
    python3 benches/flood.py --port "$PORT" --idle "$FLOOD_IDLE" --slow "$FLOOD_SLOW" \
        >"$WORK_DIR/flood.txt" 2>&1 &
    FLOOD_PID=$!
    STARTED_PIDS+=("$FLOOD_PID")
    deadline=$((SECONDS + 60))
    until grep -q '^FLOOD_READY ' "$WORK_DIR/flood.txt"; do
        kill -0 "$FLOOD_PID" 2>/dev/null || die "flood.py exited: $(tail -n 5 "$WORK_DIR/flood.txt")"
        ((SECONDS < deadline)) || die "flood.py not ready after 60 s"
        sleep 0.2
    done
    sample_start flood
    # Let the first keep-alive (5 s) and head (10 s) deadlines pass, so the
    # probes meet a flood that is being refreshed, not a fresh one.
    sleep 12
    FLOOD_LOAD1=$(load1)
    probe "$PROBES" "$WORK_DIR/probe-flood.txt"
    FLOOD_SERVER_SOCKETS=$(ss -Htn state established "( sport = :$PORT )" | wc -l)
    sample_stop
    kill -TERM "$FLOOD_PID" 2>/dev/null || true
    wait "$FLOOD_PID" 2>/dev/null || true
    forget_pid "$FLOOD_PID"
    FLOOD_LINE=$(grep '^FLOOD_RESULT ' "$WORK_DIR/flood.txt") || die "no FLOOD_RESULT in $WORK_DIR/flood.txt"
    FLOOD_READY_LINE=$(grep '^FLOOD_READY ' "$WORK_DIR/flood.txt")
    # Connection threads exit within the keep-alive timeout once the flood is gone.
    sleep 7
    read_status
    AFTER_FLOOD_THREADS=$THREAD_COUNT
    AFTER_FLOOD_RSS_KIB=$RSS_KIB
    AFTER_FLOOD_HEALTHZ=$(curl -s -o /dev/null --max-time 10 -w '%{http_code} %{time_total}' "$BASE_URL/healthz" || true)
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server died during the flood; see $WORK_DIR"
    stop_server
fi

UPTIME_AFTER=$(uptime)
log "uptime after: $UPTIME_AFTER"

# ---------------------------------------------------------------- report

field_of() {
    awk -v t="$1" -v k="$2" '$1 == t { for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' \
        "$WORK_DIR/results.txt"
}

median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}

maximum() {
    sort -g | tail -n 1
}

sum() {
    awk '{ s += $1 } END { print s + 0 }'
}

us_to_ms() {
    awk -v us="$1" 'BEGIN { printf "%.2f", us / 1000 }'
}

kib_to_mib() {
    awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'
}

# "s200=N s503=M" over all rounds of $1, as "200: N, 503: M".
statuses_of() {
    awk -v t="$1" '$1 == t { for (i = 3; i <= NF; i++) if ($i ~ /^s[0-9]+=/) { split(substr($i, 2), kv, "="); c[kv[1]] += kv[2] } }
        END { for (k in c) print k, c[k] }' "$WORK_DIR/results.txt" |
        sort -n | awk '{ s = s (NR > 1 ? ", " : "") $1 ": " $2 } END { print s }'
}

verdict() {
    if awk -v ok="$1" 'BEGIN { exit !ok }'; then echo "**MET**"; else echo "**MISSED**"; fi
}

declare -A RPS P50 P99 PEAK_RSS PEAK_THREADS
for name in "${ORDER[@]}"; do
    RPS[$name]=$(field_of "$name" rps | median)
    P50[$name]=$(us_to_ms "$(field_of "$name" p50_us | median)")
    P99[$name]=$(us_to_ms "$(field_of "$name" p99_us | median)")
    read -r rss threads < <(peaks_of "$name")
    PEAK_RSS[$name]=$rss
    PEAK_THREADS[$name]=$threads
done

per_core=${CRYPTO[hashes_per_sec_per_core]}
hash_capacity=$(awk -v r="$per_core" -v n="$HASH_SLOTS" 'BEGIN { printf "%.1f", r * n }')

echo
echo "## Load benchmark: auth-server"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "- machine: $(nproc) CPUs ($(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr), shared with other jobs"
echo "- load before: \`$UPTIME_BEFORE\`$( ((LOAD_WAITED > 0)) && echo " (after waiting ${LOAD_WAITED}s for it to drop to $MAX_LOAD$( ((LOAD_GAVE_UP)) && echo '; it did not'))")"
echo "- load after: \`$UPTIME_AFTER\`"
echo "- database: MariaDB/MySQL $DB_VERSION at $DB_WHERE, same machine, fresh database"
echo "- server: \`$AUTH_BIN\` built $(date -u -r "$AUTH_BIN" '+%Y-%m-%d %H:%M UTC') from $(git describe --always --dirty 2>/dev/null || echo 'an unknown revision')"
malloc_env=$(env | grep -E '^(MALLOC_[A-Z_]*|GLIBC_TUNABLES)=' | tr '\n' ' ' || true)
echo "- server settings: RATE_LIMIT_BURST=0 (limiter off), LOG_LEVEL=warn, HASH_CONCURRENCY=$HASH_SLOTS, MAX_CONNECTIONS=$MAX_CONN, Argon2id m=${CRYPTO[memory_kib]} t=${CRYPTO[iterations]} p=${CRYPTO[parallelism]}; the rest at their defaults unless set in the caller's environment; allocator tuning: ${malloc_env:-none (glibc defaults)}"
echo "- client: $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2) on the same cores as the server; each scenario: one ${WARMUP_S} s warm-up, then $ROUNDS runs of ${DURATION_S} s, median shown; $USERS accounts for logins"
echo "- a fresh server process for each scenario (peak RSS is that process's VmHWM, or the highest 100 ms VmRSS sample if higher); at rest: $(kib_to_mib "$IDLE_RSS_KIB") MiB RSS, $IDLE_THREADS threads"
echo
echo "### Cryptography (benches/crypto.rs, before the server started)"
echo
crypto_idle=${CRYPTO_SHARES#idle_pct=}
crypto_other=${CRYPTO_SHARES#*other_pct=}
echo "CPUs during the bench: ${crypto_idle%% *}% idle, ${crypto_other%% *}% used by other processes."
echo
echo "| figure | value |"
echo "| --- | ---: |"
echo "| Argon2id \`Hasher::hash\`, one thread: median (p10-p90) | ${CRYPTO[hash_ms_p50]} ms (${CRYPTO[hash_ms_p10]}-${CRYPTO[hash_ms_p90]}) |"
echo "| Argon2id \`Hasher::verify\`, one thread: median | ${CRYPTO[verify_ms_p50]} ms |"
echo "| raw hashes/s per core (1 s / median) | $(printf '%.1f' "$per_core") |"
echo "| hashes/s with ${CRYPTO[parallel_threads]} threads at once | $(printf '%.1f' "${CRYPTO[parallel_hashes_per_sec]}") |"
echo "| token sign, median | ${CRYPTO[sign_ns_p50]} ns/op |"
echo "| token verify, median | ${CRYPTO[verify_ns_p50]} ns/op |"
echo
echo "### HTTP scenarios"
echo
echo "| scenario | req/s | p50 ms | p99 ms | responses (all rounds) | peak RSS MiB | peak threads |"
echo "| --- | ---: | ---: | ---: | --- | ---: | ---: |"
for name in "${ORDER[@]}"; do
    responses=$(statuses_of "$name")
    if [[ -z $responses ]]; then
        total=$(field_of "$name" requests | sum)
        bad=$(field_of "$name" non_2xx_3xx | sum)
        responses="$total, non-2xx: $bad"
    fi
    errors=$(for k in connect_errors read_errors write_errors timeouts; do field_of "$name" "$k"; done | sum)
    if [[ $errors != 0 ]]; then
        responses="$responses; socket errors/timeouts: $errors"
    fi
    printf '| %s | %.0f | %s | %s | %s | %s | %s |\n' "${DESCRIBE[$name]}" "${RPS[$name]}" \
        "${P50[$name]}" "${P99[$name]}" "$responses" "$(kib_to_mib "${PEAK_RSS[$name]}")" "${PEAK_THREADS[$name]}"
done
if wants mixed; then
    echo
    echo "The two \`mixed\` rows ran at the same time and share one memory sample."
fi
if wants flood; then
    read -r quiet_ok quiet_median quiet_max < <(probe_stats "$WORK_DIR/probe-quiet.txt")
    read -r flood_ok flood_median flood_max < <(probe_stats "$WORK_DIR/probe-flood.txt")
    read -r flood_rss flood_threads < <(peaks_of flood)
    echo
    echo "### Connection flood"
    echo
    echo "- flood: \`python3 benches/flood.py --port $PORT --idle $FLOOD_IDLE --slow $FLOOD_SLOW\` ($FLOOD_READY_LINE)"
    echo "- probe: $PROBES times, one every 0.5 s: \`curl -s -o /dev/null --max-time 10 -w '%{http_code} %{time_total}' $BASE_URL/healthz\`, from 12 s after the flood was open (load1 then: $FLOOD_LOAD1)"
    echo "- flood.py at the end: \`$FLOOD_LINE\`"
    echo "- server-side established sockets on the port after the probes: $FLOOD_SERVER_SOCKETS"
    echo
    echo "| | 200 answers | median ms | max ms | peak RSS MiB | peak threads |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    echo "| new client, no flood | $quiet_ok/$PROBES | $quiet_median | $quiet_max | | |"
    echo "| new client during the flood | $flood_ok/$PROBES | $flood_median | $flood_max | $(kib_to_mib "$flood_rss") | $flood_threads |"
    echo
    echo "7 s after the flood stopped: $AFTER_FLOOD_THREADS threads, $(kib_to_mib "$AFTER_FLOOD_RSS_KIB") MiB RSS; a new \`GET /healthz\`: \`$AFTER_FLOOD_HEALTHZ\` (status, seconds)."
fi

echo
echo "### Targets"
echo
echo "| figure | measured | target | result |"
echo "| --- | --- | --- | --- |"
if wants login; then
    for c in "$LOW" "$HIGH"; do
        rps=${RPS[login-$c]}
        ratio=$(awk -v a="$rps" -v b="$hash_capacity" 'BEGIN { printf "%.3f", a / b }')
        printf '| login req/s at c=%s / (raw hashes/s per core x HASH_CONCURRENCY) | %.1f / (%.1f x %s = %s) = **%.0f%%** | >= %.0f%% | %s |\n' \
            "$c" "$rps" "$per_core" "$HASH_SLOTS" "$hash_capacity" "$(awk -v r="$ratio" 'BEGIN { print r * 100 }')" \
            "$(awk -v t="$TARGET_LOGIN_RATIO" 'BEGIN { print t * 100 }')" \
            "$(verdict "$(awk -v r="$ratio" -v t="$TARGET_LOGIN_RATIO" 'BEGIN { print (r >= t) }')")"
    done
fi
if wants mixed; then
    worst=$(us_to_ms "$(field_of mixed-me p99_us | maximum)")
    # shellcheck disable=SC2016 # the backquotes are markdown
    printf '| `GET /auth/me` p99 during a login flood (c=%s each) | %s ms (median of %s runs; worst run %s ms) | < %s ms | %s |\n' \
        "$HIGH" "${P99[mixed-me]}" "$ROUNDS" "$worst" "$TARGET_MIXED_P99_MS" \
        "$(verdict "$(awk -v p="${P99[mixed-me]}" -v t="$TARGET_MIXED_P99_MS" 'BEGIN { print (p < t) }')")"
fi
peak_all=0
peak_name=
for name in "${ORDER[@]}" $(wants flood && echo flood); do
    read -r rss _ < <(peaks_of "$name")
    if ((rss > peak_all)); then
        peak_all=$rss
        peak_name=$name
    fi
done
if [[ -n $peak_name ]]; then
    printf '| peak RSS of the server in every scenario | %s MiB at most (in %s) | < %s MiB | %s |\n' \
        "$(kib_to_mib "$peak_all")" "$peak_name" "$TARGET_RSS_MIB" \
        "$(verdict "$(awk -v k="$peak_all" -v t="$TARGET_RSS_MIB" 'BEGIN { print (k / 1024 < t) }')")"
fi
if wants flood; then
    # shellcheck disable=SC2016 # the backquotes are markdown
    printf '| new client `GET /healthz` during the flood, median | %s ms | < %s ms | %s |\n' "$flood_median" \
        "$TARGET_PROBE_MS" "$(verdict "$(awk -v m="$flood_median" -v t="$TARGET_PROBE_MS" 'BEGIN { print (m < t) }')")"
    # shellcheck disable=SC2016 # the backquotes are markdown
    printf '| new client `GET /healthz` during the flood, max | %s ms | < %s ms | %s |\n' "$flood_max" \
        "$TARGET_PROBE_MS" "$(verdict "$(awk -v m="$flood_max" -v t="$TARGET_PROBE_MS" 'BEGIN { print (m < t) }')")"
    # shellcheck disable=SC2016 # the backquotes are markdown
    printf '| new clients answered 200 during the flood | %s/%s (others: %s) | all | %s |\n' "$flood_ok" "$PROBES" \
        "$(awk '$1 != 200 { c[$1]++ } END { for (k in c) printf "%s%s x %s", (n++ ? ", " : ""), c[k], k; if (!n) printf "none" }' "$WORK_DIR/probe-flood.txt")" \
        "$(verdict "$((flood_ok == PROBES))")"
    bound=$((MAX_CONN + 64 + IDLE_THREADS))
    printf '| server threads during the flood | %s | <= %s (MAX_CONNECTIONS + 64 connection threads + the %s at rest) | %s |\n' \
        "$flood_threads" "$bound" "$IDLE_THREADS" "$(verdict "$((flood_threads <= bound))")"
fi

echo
echo "### Per run"
echo
echo "| scenario | round | req/s | p50 ms | p99 ms | max ms | load1 at start | CPU idle % | CPU to other processes % | CPU to the server % (of it in the kernel %) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
while read -r name round rest; do
    declare -A kv=()
    for pair in $rest; do
        kv[${pair%%=*}]=${pair#*=}
    done
    printf '| %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s (%s) |\n' "$name" "$round" "${kv[rps]}" \
        "$(us_to_ms "${kv[p50_us]}")" "$(us_to_ms "${kv[p99_us]}")" "$(us_to_ms "${kv[max_us]}")" "${kv[load1]}" \
        "${kv[idle_pct]}" "${kv[other_pct]}" "${kv[server_pct]}" "${kv[server_sys_pct]}"
    unset kv
done <"$WORK_DIR/results.txt"
if [[ -s $WORK_DIR/discarded.txt ]]; then
    echo
    echo "Discarded runs (other processes took more than $MAX_OTHER% of the CPUs; each was run again):"
    echo
    echo "| scenario | round | req/s | p50 ms | p99 ms | CPU to other processes % |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    while read -r name round rest; do
        declare -A kv=()
        for pair in $rest; do
            kv[${pair%%=*}]=${pair#*=}
        done
        printf '| %s | %s | %.0f | %s | %s | %s |\n' "$name" "$round" "${kv[rps]}" \
            "$(us_to_ms "${kv[p50_us]}")" "$(us_to_ms "${kv[p99_us]}")" "${kv[other_pct]}"
        unset kv
    done <"$WORK_DIR/discarded.txt"
fi
echo
echo "load1 counts the server's own runnable threads, so it rises with c; \"CPU to other processes\" is the share of"
echo "both CPUs' time during the run used by anything but the server, the database, wrk and network softirqs"
echo "(for the two mixed rows, the other wrk counts as other)."
echo
echo "Commands (tokens is a file of $(wc -l <"$TOKENS_FILE") tokens from logins made before the runs):"
echo
for name in "${ORDER[@]}"; do
    echo "- $name: \`${CMD[$name]}\`"
done
echo
log "raw output (wrk, crypto, flood, samples, server log): $WORK_DIR"
