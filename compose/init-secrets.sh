#!/bin/sh
# Run once by docker-compose.yml's `secrets-init` service, in the database
# image (it has a shell; the app image has none), as root, with the
# `secrets` volume at /secrets. Creates each secret that does not exist yet,
# so later starts keep them; none is ever printed.
#
#   token_secret            the key that signs session tokens (app, 0400)
#   token_secrets_previous  older keys that still verify; empty (app, 0400)
#   password_pepper         Argon2 secret input (app, 0400)
#   data_encryption_key     seals TOTP secrets at rest: 32 random bytes,
#                           standard base64 (app, 0400)
#   database_url            mysql://USER:PASSWORD@db:3306/DATABASE (app, 0400)
#   db_password             the database user's password (mysql, 0400)
#   db_client.cnf           a [client] option file with that user and password
#                           and the database, for the health check and
#                           `docker compose exec db mysql
#                           --defaults-extra-file=/secrets/db_client.cnf`
#                           (mysql, 0400)
#
# The app runs as 65532, the official mysql image's server as mysql (999);
# each file belongs to the one reader that needs it.
set -eu
umask 077
cd /secrets
user=${MYSQL_USER:-auth}
database=${MYSQL_DATABASE:-auth}
case "$user$database" in
*[!A-Za-z0-9_]*)
    echo "secrets-init: MYSQL_USER and MYSQL_DATABASE may hold only letters, digits and _" >&2
    exit 1
    ;;
esac

# 32 random bytes as base64url without padding: 43 URL-safe characters.
random() { head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n'; }

# Writes standard input to $1 owned by $2, unless $1 exists; atomic, so a
# start interrupted half-way never leaves a truncated secret behind.
create() {
    if [ -e "$1" ]; then
        cat >/dev/null
        return 0
    fi
    cat >".$1.new"
    chown "$2" ".$1.new"
    chmod 0400 ".$1.new"
    mv ".$1.new" "$1"
    echo "secrets-init: created /secrets/$1"
}

random | create token_secret 65532:65532
: | create token_secrets_previous 65532:65532
random | create password_pepper 65532:65532
head -c 32 /dev/urandom | base64 | tr -d '\n' | create data_encryption_key 65532:65532
random | create db_password mysql:mysql
# The URL and the option file follow the password file, also when it was
# made by an earlier start that stopped before writing them.
password=$(cat db_password)
printf 'mysql://%s:%s@db:3306/%s\n' "$user" "$password" "$database" |
    create database_url 65532:65532
printf '[client]\nuser=%s\npassword=%s\n[mysql]\ndatabase=%s\n' "$user" "$password" "$database" |
    create db_client.cnf mysql:mysql
