#!/bin/bash
# Entry point of the LOCAL STAND-IN for mysql:8.4 (built by .ci/images.sh):
# MariaDB 10.11 from Debian, started the way the official image's
# docker-entrypoint.sh starts MySQL, for the variables docker-compose.yml
# uses. It is not MySQL and does not test MySQL: it lets CI run the compose
# file where no registry is reachable.
#
# Honoured, as in the official image: MYSQL_DATABASE, MYSQL_USER,
# MYSQL_PASSWORD, MYSQL_ROOT_PASSWORD (each also as *_FILE, read after
# dropping to the mysql user, as the official image does),
# MYSQL_RANDOM_ROOT_PASSWORD and MYSQL_ALLOW_EMPTY_PASSWORD. On first start
# (no system tables in /var/lib/mysql) the data directory is initialised by a
# temporary server without networking, the database and user are created,
# and that server stops; then the real server starts, listening on TCP. The
# random root password is set but, unlike the official image, never printed.
# Any command other than mysqld (or options) runs as given.
set -euo pipefail

say() { echo "[Entrypoint] $*"; }
die() {
    echo "[Entrypoint] ERROR: $*" >&2
    exit 1
}

# Sets $1 from $1 or from the file named by ${1}_FILE; both is an error.
file_env() {
    local var=$1 file_var=${1}_FILE
    if [[ -n ${!var:-} && -n ${!file_var:-} ]]; then
        die "both $var and $file_var are set (but are exclusive)"
    fi
    if [[ -n ${!file_var:-} ]]; then
        [[ -r ${!file_var} ]] || die "$file_var names a file the mysql user cannot read: ${!file_var}"
        export "$var"="$(<"${!file_var}")"
    fi
}

# Quotes $1 as an SQL string literal.
sql_string() {
    local s=${1//\\/\\\\}
    printf "'%s'" "${s//\'/\'\'}"
}

if [[ ${1:-} == -* ]]; then
    set -- mysqld "$@"
fi
if [[ ${1:-} != mysqld ]]; then
    exec "$@"
fi
shift

if [[ $(id -u) == 0 ]]; then
    chown mysql:mysql /var/lib/mysql /run/mysqld
    say "switching to dedicated user 'mysql'"
    exec setpriv --reuid=mysql --regid=mysql --init-groups "$0" mysqld "$@"
fi

for var in MYSQL_ROOT_PASSWORD MYSQL_DATABASE MYSQL_USER MYSQL_PASSWORD; do
    file_env "$var"
done

if [[ ! -d /var/lib/mysql/mysql ]]; then
    if [[ -z ${MYSQL_ROOT_PASSWORD:-} && -z ${MYSQL_ALLOW_EMPTY_PASSWORD:-} && -z ${MYSQL_RANDOM_ROOT_PASSWORD:-} ]]; then
        die "database is uninitialized and password option is not specified
    You need to specify one of MYSQL_ROOT_PASSWORD, MYSQL_ALLOW_EMPTY_PASSWORD and MYSQL_RANDOM_ROOT_PASSWORD"
    fi
    if [[ -n ${MYSQL_USER:-} && -z ${MYSQL_PASSWORD:-} ]]; then
        die "MYSQL_USER is set but MYSQL_PASSWORD (or MYSQL_PASSWORD_FILE) is not"
    fi
    say "initialising the database (stand-in: MariaDB, not MySQL)"
    mariadb-install-db --datadir=/var/lib/mysql --auth-root-authentication-method=normal \
        --skip-test-db >/dev/null
    mariadbd --skip-networking --socket=/run/mysqld/init.sock &
    pid=$!
    for _ in $(seq 60); do
        mariadb-admin --socket=/run/mysqld/init.sock -uroot ping --silent 2>/dev/null && break
        sleep 1
    done
    if [[ -n ${MYSQL_RANDOM_ROOT_PASSWORD:-} ]]; then
        MYSQL_ROOT_PASSWORD=$(head -c 24 /dev/urandom | base64)
        say "a random root password was set (not shown)"
    fi
    {
        # Only root@localhost stays: mariadb-install-db also makes root for
        # 127.0.0.1, ::1 and the host name, without a password.
        echo "DELETE FROM mysql.global_priv WHERE User = '' OR (User = 'root' AND Host <> 'localhost');"
        echo "DELETE FROM mysql.proxies_priv WHERE Host <> 'localhost';"
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY $(sql_string "${MYSQL_ROOT_PASSWORD:-}");"
        if [[ -n ${MYSQL_DATABASE:-} ]]; then
            echo "CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\`;"
        fi
        if [[ -n ${MYSQL_USER:-} ]]; then
            echo "CREATE USER $(sql_string "$MYSQL_USER")@'%' IDENTIFIED BY $(sql_string "$MYSQL_PASSWORD");"
            if [[ -n ${MYSQL_DATABASE:-} ]]; then
                echo "GRANT ALL ON \`$MYSQL_DATABASE\`.* TO $(sql_string "$MYSQL_USER")@'%';"
            fi
        fi
        echo "FLUSH PRIVILEGES;"
    } | mariadb --socket=/run/mysqld/init.sock -uroot
    kill "$pid"
    wait "$pid" || true
    say "initialisation done; starting the server"
fi

exec mariadbd "$@"
