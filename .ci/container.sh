#!/usr/bin/env bash
# CI stage: the container image and the compose stack, built and run for
# real with podman, on a machine that reaches no container registry.
#
#  1. Checks that no build input can miss the image (check-build-inputs.sh).
#  2. Makes the base images from Debian packages and this machine's Rust
#     toolchain, or reuses them (images.sh: they are stand-ins, see there).
#  3. Builds the Dockerfile as it is, and fails if the image passes
#     MAX_IMAGE_MB (default 40, in MB of 10^6 bytes, as podman shows sizes).
#  4. Runs the image against the MariaDB on this machine (host network):
#     `auth-server healthcheck` inside it, the image's HEALTHCHECK,
#     regression.sh, and a SIGTERM that must end it with status 0.
#  5. Runs docker-compose.yml itself with podman-compose, against stand-ins
#     for mysql:8.4 and axllent/mailpit: regression.sh, the hardening (no
#     secret in any container's environment, read-only app without
#     capabilities, /metrics only on the compose network, no password on the
#     health check's command line), mail from the network to the inbox API,
#     secrets kept across a restart, and the README's token key rotation.
#
# Needs root, a MariaDB on 127.0.0.1:3306 that lets root in without a
# password (.ci/run makes sure of it), curl and python3. Installs podman,
# buildah, runc, debootstrap (Debian) and podman-compose (PyPI) if missing.
# Leaves the stand-ins and the image auth-server:local behind for the next
# run; removes its containers, volumes and databases.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=.ci/podman-env.sh
source .ci/podman-env.sh

PODMAN_COMPOSE_VERSION=1.6.0
MAX_IMAGE_MB=${MAX_IMAGE_MB:-40}
IMAGE=localhost/auth-server:local
IMAGE_PORT=18280
IMAGE_DB=auth_ci_image
PROJECT=auth-ci-compose
export APP_PORT=18380 MAIL_UI_PORT=18325
# podman builds OCI images by default, which drop HEALTHCHECK; this also
# makes podman-compose's build share the layer cache with step 3's.
export BUILDAH_FORMAT=docker

log() { printf '\n== container: %s\n' "$*"; }
fail() {
    echo "container: FAILED: $*" >&2
    exit 1
}
stage_started=$SECONDS
step_started=$SECONDS
took() {
    echo "   ($1: $((SECONDS - step_started)) s)"
    step_started=$SECONDS
}

install_tools() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v buildah >/dev/null || missing+=(buildah)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v runc >/dev/null || missing+=(runc)
    if ((${#missing[@]})); then
        log "installing ${missing[*]} (Debian)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    local have
    have=$(python3 -c 'import importlib.metadata as m; print(m.version("podman-compose"))' 2>/dev/null || true)
    if [[ $have != "$PODMAN_COMPOSE_VERSION" ]]; then
        # Debian's 1.0.3 passes ${VAR:-} through literally; 1.6.0 does not.
        log "installing podman-compose $PODMAN_COMPOSE_VERSION (PyPI; found: ${have:-none})"
        python3 -m pip install -q --disable-pip-version-check "podman-compose==$PODMAN_COMPOSE_VERSION"
    fi
}

# Waits up to $2 seconds for GET $1 to answer 200.
wait_healthy() {
    local url=$1 seconds=$2
    for _ in $(seq "$seconds"); do
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        sleep 1
    done
    return 1
}

# Runs regression.sh against $1, reading mail with the settings given after
# it (MAIL_COMMAND=... or MAILPIT_URL=...); its output goes to the log, and
# only the summary and failures are shown.
regression() {
    local out status=0 base=$1
    shift
    out=$(mktemp)
    env -u MAIL_COMMAND -u MAILPIT_URL BASE_URL="$base" "$@" RATE_LIMIT_RECOVERY_SECONDS=0 \
        ./regression.sh >"$out" 2>&1 || status=$?
    grep -E '^(FAIL|skip)' "$out" | cut -c1-160 || true
    tail -1 "$out"
    rm -f "$out"
    return "$status"
}

# --- the image ------------------------------------------------------------

build_image() {
    log "building $IMAGE from the Dockerfile"
    local out
    out=$(mktemp)
    if ! podman build --pull=never --tag "$IMAGE" . >"$out" 2>&1; then
        cat "$out" >&2
        fail "podman build"
    fi
    echo "   $(grep -c 'Using cache' "$out" || true) steps from the layer cache"
    rm -f "$out"
    took build

    local bytes user health
    bytes=$(podman image inspect --format '{{.Size}}' "$IMAGE")
    user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
    health=$(podman image inspect --format '{{json .Config.Healthcheck.Test}}' "$IMAGE")
    printf '   image size: %s bytes (%s MB; limit %s MB), user %s, health check %s\n' \
        "$bytes" "$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }')" \
        "$MAX_IMAGE_MB" "$user" "$health"
    ((bytes <= MAX_IMAGE_MB * 1000000)) || fail "the image is $bytes bytes, above $MAX_IMAGE_MB MB"
    [[ $user == 65532:65532 ]] || fail "the image runs as '$user', not 65532:65532"
    [[ $health == '["CMD","/auth-server","healthcheck"]' ]] || fail "the image's HEALTHCHECK is $health"
}

run_image() {
    log "running the image against the MariaDB on this machine"
    mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $IMAGE_DB; CREATE DATABASE $IMAGE_DB"
    podman rm -f auth-ci-image >/dev/null 2>&1 || true
    podman run -d --name auth-ci-image --network host \
        -e DATABASE_URL="mysql://root@127.0.0.1:3306/$IMAGE_DB" \
        -e TOKEN_SECRET="ci-secret-$(date +%s%N)-$RANDOM-$RANDOM" \
        -e BIND_ADDR="127.0.0.1:$IMAGE_PORT" \
        "$IMAGE" >/dev/null 2>"$scratch/run.err" || {
        cat "$scratch/run.err" >&2
        fail "podman run"
    }
    wait_healthy "http://127.0.0.1:$IMAGE_PORT/healthz" 60 || fail "the container did not become healthy"
    podman exec auth-ci-image /auth-server healthcheck || fail "auth-server healthcheck inside the container"
    podman healthcheck run auth-ci-image 2>/dev/null || fail "the image's HEALTHCHECK"
    echo "   healthy; auth-server healthcheck and the image's HEALTHCHECK pass"
    # shellcheck disable=SC2016
    regression "http://127.0.0.1:$IMAGE_PORT" \
        "MAIL_COMMAND=mariadb -h127.0.0.1 -uroot $IMAGE_DB -N -e \"SELECT body FROM mail_outbox WHERE recipient=\\\"\$1\\\" ORDER BY id DESC LIMIT 10\"" ||
        fail "regression.sh against the container"
    podman stop --time 15 auth-ci-image >/dev/null 2>&1
    local status
    status=$(podman inspect --format '{{.State.ExitCode}}' auth-ci-image)
    [[ $status == 0 ]] || fail "after SIGTERM the container exited with status $status, not 0"
    echo "   SIGTERM: exit status 0"
    podman rm auth-ci-image >/dev/null 2>&1
    mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $IMAGE_DB"
    took "image run"
}

# --- the compose stack ----------------------------------------------------

compose() { podman-compose -p "$PROJECT" "$@"; }
container_of() {
    podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -1
}

compose_down() {
    compose down -v >/dev/null 2>&1 || true
}

compose_logs() {
    local service
    for service in secrets-init db mail app; do
        echo "--- $service" >&2
        podman logs "$(container_of "$service")" 2>&1 | tail -20 >&2 || true
    done
}

compose_up() {
    log "podman-compose up -d --build (docker-compose.yml as it is)"
    # .env.example copied to .env must give the values it shows.
    local config
    config=$(compose --env-file .env.example config 2>/dev/null) || fail "podman-compose config with .env.example"
    [[ $config == *$'\n      MAIL_FROM: auth-server <no-reply@localhost>\n'* ]] ||
        fail ".env.example does not parse to the values it shows (MAIL_FROM)"
    compose_down
    compose up -d --build >"$scratch/up.log" 2>&1 || {
        cat "$scratch/up.log" >&2
        fail "podman-compose up"
    }
    wait_healthy "http://127.0.0.1:$APP_PORT/healthz" 120 || {
        compose_logs
        fail "the compose stack's app did not become healthy on port $APP_PORT"
    }
    podman exec "$(container_of app)" /auth-server healthcheck || fail "auth-server healthcheck in the app container"
    podman healthcheck run "$(container_of app)" 2>/dev/null || fail "the app's HEALTHCHECK"
    podman healthcheck run "$(container_of db)" 2>/dev/null || fail "the db service's health check"
    echo "   up and healthy (app, and db through its own health check)"
    took "compose up"
}

# After regression.sh read its links from the inbox: the app delivered
# through its outbox, so every row is sent (none waits or failed), each sent
# row's bodies are blanked, and the inbox's messages come from MAIL_FROM.
compose_mail() {
    local query counts="" listing
    query="SELECT SUM(sent_at IS NULL AND failed_at IS NULL), SUM(failed_at IS NOT NULL), SUM(sent_at IS NOT NULL AND body <> ''), COUNT(*) FROM mail_outbox"
    for _ in $(seq 1 20); do
        counts=$(podman exec "$(container_of db)" mysql --defaults-extra-file=/secrets/db_client.cnf -N -e "$query" 2>/dev/null | tr '\t' ' ')
        [[ $counts == "0 0 0 "* ]] && break
        sleep 0.5
    done
    [[ $counts =~ ^0\ 0\ 0\ [1-9][0-9]*$ ]] ||
        fail "mail_outbox (waiting, failed, sent with a body, all) is '$counts', not '0 0 0 N'"
    listing=$(curl -fsS "http://127.0.0.1:$MAIL_UI_PORT/api/v1/messages")
    python3 -c 'import json, sys
m = json.load(sys.stdin)["messages"]
assert m and all(x["From"]["Address"] == "no-reply@localhost" for x in m), [x["From"] for x in m]' <<<"$listing" ||
        fail "the inbox holds mail not from MAIL_FROM, or none"
    curl -fsS -X DELETE "http://127.0.0.1:$MAIL_UI_PORT/api/v1/messages" >/dev/null
    echo "   mail: ${counts##* } outbox rows, all sent over SMTP to mail:1025 and blanked; read back on 127.0.0.1:$MAIL_UI_PORT/api/v1"
}

compose_hardening() {
    local app db secrets ctr value env leaked=0
    app=$(container_of app)
    db=$(container_of db)
    [[ $(podman inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$app") == true ]] || fail "app: root file system not read-only"
    [[ $(podman inspect --format '{{.EffectiveCaps}}' "$app") == '[]' ]] || fail "app: has capabilities"
    [[ $(podman inspect --format '{{.HostConfig.SecurityOpt}}' "$app") == *no-new-privileges* ]] || fail "app: no no-new-privileges"
    [[ $(podman inspect --format '{{.Config.User}}' "$app") == 65532:65532 ]] || fail "app: not user 65532"
    echo "   app: read-only root, no capabilities, no-new-privileges, user 65532"

    # Every generated secret, read from the volume on the host.
    secrets=$(podman volume inspect --format '{{.Mountpoint}}' "${PROJECT}_secrets")
    for ctr in $(podman ps -aq --filter "label=io.podman.compose.project=$PROJECT"); do
        env=$(podman inspect --format '{{range .Config.Env}}{{println .}}{{end}}{{json .Config.Healthcheck}}{{json .Config.Cmd}}' "$ctr")
        for file in token_secret password_pepper data_encryption_key db_password; do
            value=$(cat "$secrets/$file")
            [[ ${#value} -ge 32 ]] || fail "secret $file is ${#value} characters"
            if [[ $env == *"$value"* ]]; then
                echo "   $(podman inspect --format '{{.Name}}' "$ctr"): $file in its environment or command" >&2
                leaked=1
            fi
        done
    done
    ((leaked == 0)) || fail "a secret is in a container's environment, health check or command"
    for file in token_secret token_secrets_previous password_pepper data_encryption_key database_url; do
        [[ $(stat -c '%u %a' "$secrets/$file") == "65532 400" ]] || fail "$file is not 0400 and owned by 65532"
    done
    for file in db_password db_client.cnf; do
        [[ $(stat -c '%u %a' "$secrets/$file") == "999 400" ]] || fail "$file is not 0400 and owned by mysql (999)"
    done
    echo "   no secret in any container's environment, health check or command; files 0400 per reader"

    local status
    status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$APP_PORT/metrics")
    [[ $status == 404 ]] || fail "GET /metrics on the public port answered $status, not 404"
    local metrics
    metrics=$(podman exec "$db" bash -c 'exec 3<>/dev/tcp/app/9090 && printf "GET /metrics HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n" >&3 && cat <&3')
    [[ $metrics == *$'\n'auth_http_requests_total* ]] || fail "/metrics not served on app:9090 inside the compose network"
    if podman port "$app" | grep -q '^9090'; then fail "port 9090 is published"; fi
    echo "   /metrics: 404 on the public port, served on app:9090 inside the network only"
}

compose_checks() {
    log "compose stack: regression.sh, hardening, mail"
    # The README's way to read the mail: the stack delivers it to Mailpit.
    regression "http://127.0.0.1:$APP_PORT" "MAILPIT_URL=http://127.0.0.1:$MAIL_UI_PORT" ||
        fail "regression.sh against the compose stack"
    compose_hardening
    compose_mail
    took "compose checks"
}

# podman refuses to start a container while a container it depends on is
# not running (podman-compose passes depends_on as --requires), and
# secrets-init has exited by design: so `restart app` fails here, where
# Docker's works. The stack is stopped and brought up again instead.
compose_restart() {
    compose stop >/dev/null 2>&1
    compose up -d >"$scratch/up2.log" 2>&1 || {
        cat "$scratch/up2.log" >&2
        fail "podman-compose up after stop"
    }
    wait_healthy "http://127.0.0.1:$APP_PORT/healthz" 120 || {
        compose_logs
        fail "the app did not come back after a restart"
    }
}

# Prints the token of a new login as $1, registering $1 first if $2 is set.
token_for() {
    local body="{\"email\":\"$1\",\"password\":\"correct horse battery staple\"}"
    if [[ -n ${2:-} ]]; then
        curl -fsS -o /dev/null -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$APP_PORT/auth/register"
    fi
    curl -fsS -H 'Content-Type: application/json' -d "$body" "http://127.0.0.1:$APP_PORT/auth/login" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])'
}

me_status() {
    curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $1" "http://127.0.0.1:$APP_PORT/auth/me"
}

# A restart keeps every secret: a token from before still verifies (the
# same key), the password still logs in (the same pepper), the app reaches
# the database (the same password). Then the README's key rotation: the old
# token keeps working through token_secrets_previous, new tokens are signed
# with a new key.
compose_secrets() {
    log "compose: secrets kept across a restart; key rotation"
    local email="ci-restart-$RANDOM$RANDOM@example.com" before after secrets old_key status
    before=$(token_for "$email" register) || fail "register and log in"
    secrets=$(podman volume inspect --format '{{.Mountpoint}}' "${PROJECT}_secrets")
    old_key=$(cat "$secrets/token_secret")
    compose_restart
    [[ $(me_status "$before") == 200 ]] || fail "after a restart, a token from before was refused"
    token_for "$email" >/dev/null || fail "after a restart, the password no longer logs in"
    echo "   restart: the token key, the pepper and the database password were kept"

    compose run --rm --entrypoint sh secrets-init -c \
        'cd /secrets && { cat token_secret; echo; } >>token_secrets_previous && rm token_secret' >/dev/null 2>&1 ||
        fail "rotation: moving the key to token_secrets_previous"
    compose run --rm secrets-init >/dev/null 2>&1 || fail "rotation: secrets-init making a new key"
    [[ $(cat "$secrets/token_secret") != "$old_key" ]] || fail "rotation: token_secret did not change"
    compose_restart
    status=$(me_status "$before")
    [[ $status == 200 ]] || fail "rotation: a token signed by the previous key answered $status, not 200"
    after=$(token_for "$email") || fail "rotation: log in"
    [[ $(me_status "$after") == 200 ]] || fail "rotation: a token signed by the new key was refused"
    echo "   rotation: the old key still verifies through token_secrets_previous; new logins use the new key"
    took "compose secrets"
}

scratch=$(mktemp -d)
cleanup() {
    local status=$?
    if ((status != 0)) && podman ps -aq --filter "label=io.podman.compose.project=$PROJECT" | grep -q .; then
        compose_logs
    fi
    podman rm -f auth-ci-image >/dev/null 2>&1 || true
    mariadb -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS $IMAGE_DB" 2>/dev/null || true
    compose_down
    rm -rf "$scratch"
}
trap cleanup EXIT

install_tools
log "build inputs"
.ci/check-build-inputs.sh
log "base images (stand-ins; .ci/images.sh)"
.ci/images.sh
took "stand-ins"
build_image
run_image
compose_up
compose_checks
compose_secrets
log "container stage passed in $((SECONDS - stage_started)) s"
