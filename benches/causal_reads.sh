#!/usr/bin/env bash
# What causal reads cost on a Galera cluster: GET /auth/me (one token check
# and one primary-key read per request) with DB_CAUSAL_READS=off and =auto
# (which is on for a Galera node: `wsrep_sync_wait = 1`, so each read
# waits until the node has applied everything committed before it).
#
# Starts a real 3-node MariaDB Galera cluster on 127.0.0.1 in a temporary
# directory (the same configuration as tests/common/galera.rs), one server
# against node 0, and runs wrk at two concurrencies, the two settings
# alternating round by round so that drift on a shared machine hits both
# alike. Prints one line per run and a markdown table of medians.
#
# Needs mariadbd and mariadb-install-db (mariadb-server), galera-4, rsync,
# wrk, curl and python3; run as root (the nodes run as mysql) or as a user
# who can write the temporary directory. Environment (all optional):
#   BENCH_ROUNDS      3      measured runs per setting and concurrency
#   BENCH_DURATION    10s    each run; a 3 s warm-up precedes each setting
#   BENCH_SKIP_BUILD  1 to use target/release/auth-server as it is
#   BENCH_PORT_BASE   24000  the nodes use BASE+10*i .. +3, the server BASE+50
#
# Usage: benches/causal_reads.sh > report.md

set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-10s}
BASE=${BENCH_PORT_BASE:-24000}
PROVIDER=/usr/lib/galera/libgalera_smm.so
PORT=$((BASE + 50))
URL="http://127.0.0.1:$PORT"

for tool in mariadbd mariadb-install-db mariadb wrk curl python3 rsync; do
    command -v "$tool" >/dev/null || { echo "causal_reads.sh: needs $tool" >&2; exit 2; }
done
[[ -e $PROVIDER ]] || { echo "causal_reads.sh: needs $PROVIDER (apt-get install galera-4)" >&2; exit 2; }

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    cargo build --release --locked >&2
fi

dir=$(mktemp -d /tmp/causal-reads.XXXXXX)
user_line=""
if [[ $(id -u) == 0 ]]; then
    user_line="user=mysql"
    chown mysql:mysql "$dir"
fi
server_pid=""
cleanup() {
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null
    for i in 0 1 2; do
        [[ -f $dir/node$i/mysqld.pid ]] && kill -9 "$(cat "$dir/node$i/mysqld.pid")" 2>/dev/null
    done
    rm -rf "$dir"
}
trap cleanup EXIT

peers=$(printf '127.0.0.1:%s,' $((BASE + 1)) $((BASE + 11)) $((BASE + 21)))
peers=${peers%,}
for i in 0 1 2; do
    node=$dir/node$i
    mkdir -p "$node"
    [[ -n $user_line ]] && chown mysql:mysql "$node"
    cat >"$node/my.cnf" <<EOF
[mysqld]
$user_line
datadir=$node/data
socket=$node/mysqld.sock
pid-file=$node/mysqld.pid
log-error=$node/error.log
port=$((BASE + 10 * i))
bind-address=127.0.0.1
skip-name-resolve
max_connections=1000
binlog_format=ROW
default_storage_engine=InnoDB
innodb_autoinc_lock_mode=2
innodb_buffer_pool_size=64M
innodb_log_file_size=16M
innodb_flush_log_at_trx_commit=2
wsrep_on=ON
wsrep_provider=$PROVIDER
wsrep_cluster_name=causal_reads_bench
wsrep_node_name=node$i
wsrep_node_address=127.0.0.1:$((BASE + 10 * i + 1))
wsrep_cluster_address=gcomm://$peers
wsrep_provider_options="gmcast.listen_addr=tcp://127.0.0.1:$((BASE + 10 * i + 1));ist.recv_addr=127.0.0.1:$((BASE + 10 * i + 2));gcache.size=64M"
wsrep_sst_method=rsync
wsrep_sst_receive_address=127.0.0.1:$((BASE + 10 * i + 3))
EOF
    mariadb-install-db --defaults-file="$node/my.cnf" --auth-root-authentication-method=normal \
        --skip-test-db >"$node/install.log" 2>&1
done

sql() { mariadb -h127.0.0.1 -P"$((BASE + 10 * $1))" -uroot -N -e "$2"; }
wait_synced() {
    for _ in $(seq 120); do
        [[ $(sql "$1" "SHOW STATUS LIKE 'wsrep_local_state_comment'" 2>/dev/null | cut -f2) == Synced ]] && return
        sleep 0.5
    done
    echo "causal_reads.sh: node $1 did not sync; see $dir/node$1/error.log" >&2
    exit 1
}
mariadbd --defaults-file="$dir/node0/my.cnf" --wsrep-new-cluster >/dev/null 2>&1 &
disown
wait_synced 0
for i in 1 2; do
    mariadbd --defaults-file="$dir/node$i/my.cnf" >/dev/null 2>&1 &
    disown
    wait_synced "$i"
done
echo "cluster: $(sql 0 "SHOW STATUS LIKE 'wsrep_cluster_size'" | cut -f2) nodes synced" >&2
sql 0 "CREATE DATABASE auth_causal"

start_server() {
    DATABASE_URL="mysql://root@127.0.0.1:$BASE/auth_causal" \
        TOKEN_SECRET=causal-reads-benchmark-key-0123456789abcdef \
        BIND_ADDR="127.0.0.1:$PORT" RATE_LIMIT_BURST=0 LOG_LEVEL=warn \
        DB_CAUSAL_READS="$1" target/release/auth-server 2>>"$dir/server.log" &
    server_pid=$!
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "$URL/healthz" 2>/dev/null && return
        sleep 0.1
    done
    echo "causal_reads.sh: the server did not come up; see $dir/server.log" >&2
    exit 1
}
stop_server() {
    kill "$server_pid"
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

# Tokens for eight sessions (wrk thread i uses token i).
start_server off
curl -fsS -o /dev/null "$URL/auth/register" -H 'Content-Type: application/json' \
    -d '{"email": "bench@example.com", "password": "correct horse battery staple"}'
: >"$dir/tokens"
for _ in $(seq 8); do
    curl -fsS "$URL/auth/login" -H 'Content-Type: application/json' \
        -d '{"email": "bench@example.com", "password": "correct horse battery staple"}' |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' >>"$dir/tokens"
done
stop_server

results=$dir/results
: >"$results"
run() {
    local setting=$1 c=$2 out
    out=$(BENCH_TOKENS_FILE="$dir/tokens" wrk -t2 -c"$c" -d"$DURATION" \
        -s benches/wrk/me.lua "$URL/auth/me" | grep '^WRK_RESULT')
    echo "$setting c=$c $out" >&2
    echo "$setting $c $out" >>"$results"
}
for round in $(seq "$ROUNDS"); do
    for setting in off auto; do
        start_server "$setting"
        BENCH_TOKENS_FILE="$dir/tokens" wrk -t2 -c8 -d3s -s benches/wrk/me.lua "$URL/auth/me" >/dev/null
        for c in 8 64; do
            run "$setting" "$c"
        done
        stop_server
    done
    echo "round $round of $ROUNDS done" >&2
done

python3 - "$results" "$ROUNDS" "$DURATION" <<'PY'
import statistics, sys

path, rounds, duration = sys.argv[1:4]
runs = {}
for line in open(path):
    setting, c, _, *fields = line.split()
    values = dict(f.split("=") for f in fields)
    if int(values["non_2xx_3xx"]) or int(values["timeouts"]):
        sys.exit(f"a run had errors: {line.strip()}")
    runs.setdefault((int(c), setting), []).append(values)

print(f"GET /auth/me on node 0 of a 3-node Galera cluster, wrk -t2 -d{duration}, "
      f"median of {rounds} runs per cell\n")
print("| concurrency | DB_CAUSAL_READS | req/s | p50 | p99 |")
print("|---|---|---|---|---|")
for c in sorted({c for c, _ in runs}):
    for setting in ("off", "auto"):
        r = runs[(c, setting)]
        rps = statistics.median(float(v["rps"]) for v in r)
        p50 = statistics.median(int(v["p50_us"]) for v in r) / 1000
        p99 = statistics.median(int(v["p99_us"]) for v in r) / 1000
        print(f"| {c} | {setting} | {rps:.0f} | {p50:.2f} ms | {p99:.2f} ms |")
    off = statistics.median(float(v["rps"]) for v in runs[(c, "off")])
    auto = statistics.median(float(v["rps"]) for v in runs[(c, "auto")])
    print(f"| {c} | auto / off | {auto / off:.2f}x | | |")
PY
