#!/usr/bin/env bash
# The admin listing at a million accounts (issue 17's target: p99 under
# 50 ms for any page on the 2-core machine).
#
# Starts the release binary against a fresh database (dropped and created;
# its name must contain "bench") with an ADMIN_EMAIL admin, inserts
# BENCH_ACCOUNTS accounts straight into `users` (user<N>@bench.example, one
# in a hundred verified, one in ten thousand disabled, one in a thousand an
# admin), logs the admin in, and times each kind of page with wrk, one
# scenario after another. Prints a markdown table.
#
# Needs wrk, curl, python3 and the mariadb client. Environment (optional):
#   BENCH_ACCOUNTS     1000000
#   BENCH_DURATION     5s
#   BENCH_CONNECTIONS  4
#   BENCH_PORT         18099
#   BENCH_SKIP_BUILD   1 to use target/release/auth-server as it is
#
# Usage: benches/admin_list.sh > report.md

set -euo pipefail
cd "$(dirname "$0")/.."

ACCOUNTS=${BENCH_ACCOUNTS:-1000000}
DURATION=${BENCH_DURATION:-5s}
CONNECTIONS=${BENCH_CONNECTIONS:-4}
PORT=${BENCH_PORT:-18099}
DB=auth_bench_admin_list
ADMIN=root@admin.example
PASSWORD=bench-admin-passphrase
BASE=http://127.0.0.1:$PORT

if [[ ${BENCH_SKIP_BUILD:-0} != 1 ]]; then
    cargo build --release --locked -q
fi
mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
env DATABASE_URL="mysql://root@127.0.0.1:3306/$DB" \
    TOKEN_SECRET="bench-secret-$RANDOM-$RANDOM-0123456789abcdef" \
    BIND_ADDR="127.0.0.1:$PORT" RATE_LIMIT_BURST=0 LOG_LEVEL=warn \
    ADMIN_EMAIL=$ADMIN ADMIN_PASSWORD=$PASSWORD \
    target/release/auth-server 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
    sleep 0.2
done

echo "inserting $ACCOUNTS accounts..." >&2
started=$SECONDS
mariadb -h127.0.0.1 -uroot "$DB" <<SQL
CREATE TEMPORARY TABLE digits (i INT NOT NULL);
INSERT INTO digits VALUES (0), (1), (2), (3), (4), (5), (6), (7), (8), (9);
INSERT INTO users (email, email_key, password_hash, created_at, updated_at,
                   email_verified_at, role, disabled_at)
SELECT CONCAT('user', n, '@bench.example'),
       UNHEX(SHA2(CONCAT('user', n, '@bench.example'), 256)),
       'not-a-hash', 1700000000, 1700000000,
       IF(n % 100 = 0, 1700000000, NULL),
       IF(n % 1000 = 7, 'admin', 'user'),
       IF(n % 10000 = 3, 1700000000, NULL)
FROM (SELECT a.i + 10 * b.i + 100 * c.i + 1000 * d.i + 10000 * e.i + 100000 * f.i
             + 1000000 * g.i AS n
      FROM digits a, digits b, digits c, digits d, digits e, digits f, digits g) numbers
WHERE n < $ACCOUNTS;
ANALYZE TABLE users;
SQL
echo "inserted in $((SECONDS - started)) s" >&2

token=$(curl -fsS "$BASE/auth/login" -H 'Content-Type: application/json' \
    -d "{\"email\":\"$ADMIN\",\"password\":\"$PASSWORD\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
middle=$(mariadb -h127.0.0.1 -uroot "$DB" -N -e "SELECT MAX(id) DIV 2 FROM users")

echo "| page | req/s | p50 | p99 | non-2xx | users on the page |"
echo "|---|---|---|---|---|---|"
for path in \
    "/admin/users" \
    "/admin/users?limit=500" \
    "/admin/users?after=$middle" \
    "/admin/users?after=$middle&limit=500" \
    "/admin/users?role=admin" \
    "/admin/users?verified=true" \
    "/admin/users?disabled=true" \
    "/admin/users?query=user12" \
    "/admin/users?query=user999999%40" \
    "/admin/users?query=nobody"; do
    shown=$(curl -fsS "$BASE$path" -H "Authorization: Bearer $token" |
        python3 -c 'import json, sys; d = json.load(sys.stdin); print(len(d["users"]), "next" if d["next"] else "last")')
    line=$(BENCH_TOKEN=$token wrk -t2 -c"$CONNECTIONS" -d"$DURATION" \
        -s benches/wrk/admin.lua "$BASE$path" | grep '^WRK_RESULT')
    python3 - "$path" "$shown" "$line" <<'PY'
import sys
path, shown, line = sys.argv[1:4]
f = dict(kv.split("=") for kv in line.split()[1:])
print(f"| `{path}` | {float(f['rps']):.0f} | {int(f['p50_us']) / 1000:.2f} ms "
      f"| {int(f['p99_us']) / 1000:.2f} ms | {f['non_2xx_3xx']} | {shown} |")
PY
done
