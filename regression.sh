#!/usr/bin/env bash
# regression.sh: end-to-end regression test of a running auth-server.
#
# Usage:
#   ./regression.sh                                   # against http://localhost:8080
#   BASE_URL=http://127.0.0.1:18080 ./regression.sh   # against any running server
#   docker compose up -d && ./regression.sh           # waits for the app to come up
#
#   # Also follow the mailed links (password reset, address verification,
#   # confirming a new address). With no SMTP_URL the server keeps each mail
#   # in the database's mail_outbox table; a local MariaDB/MySQL:
#   MAIL_COMMAND='mysql -h127.0.0.1 -uroot auth -N -e "SELECT body FROM mail_outbox WHERE recipient=\"$1\" ORDER BY id DESC LIMIT 10"' ./regression.sh
#   # The docker compose stack delivers to its mail catcher (Mailpit):
#   MAILPIT_URL=http://localhost:8025 ./regression.sh
#
# Environment:
#   BASE_URL          scheme://host:port of the server (default http://localhost:8080)
#   CACERT            a PEM file of the CA that signed an HTTPS server's
#                     certificate (curl's --cacert, and Python's for the raw
#                     requests), for a BASE_URL of https:// with a private CA.
#   MAIL_COMMAND      a shell command that prints the newest mail bodies for
#                     the recipient given as its first argument, newest
#                     first; it runs as `bash -c "$MAIL_COMMAND" _ EMAIL`, so
#                     write $1 inside single quotes as above. A link is told
#                     by its path: /verify-email?token=, /confirm-email?token=,
#                     and any other ?token= is the reset link (whose page is
#                     RESET_URL_BASE). Newlines may be real or escaped as `\n`
#                     (mysql -N). The outbox keeps a body only until the mail
#                     is sent: with SMTP_URL set, read the mail server instead.
#   MAILPIT_URL       instead of MAIL_COMMAND: a Mailpit inbox (its HTTP API,
#                     /api/v1/messages) that the server's SMTP_URL delivers to.
#                     Neither set: the checks that need a mailed link (the
#                     reset happy path, reuse and cooldown, the reset page's
#                     form, a reset lifting a lockout, verifying an address,
#                     confirming a new one) print one skip line.
#   EXPECT_SHORT_TTL  1 = the server runs with TOKEN_TTL_SECONDS<=2: check that
#                     tokens expire (token_expired). Tokens then die too fast for
#                     the sections that keep one for several requests, so those
#                     print a skip line instead of running.
#   ADMIN_EMAIL, ADMIN_PASSWORD
#                     the server's first admin (its own ADMIN_EMAIL and
#                     ADMIN_PASSWORD): walk the admin API (list, view,
#                     disable, enable, end sessions, lift a lockout, mail a
#                     reset, delete). Unset: one skip line.
#   ADMIN_URL         where the admin API is served, if the server has an
#                     ADMIN_BIND_ADDR (default BASE_URL).
#   SLOW_CHECKS       1 = also check 408 request_timeout, which waits for the
#                     server's HEADER_TIMEOUT_MS (10 s by default).
#   EXPECT_NO_RATE_LIMIT
#                     1 = the server runs with RATE_LIMIT_BURST=0 (limiter
#                     off): 400 logins without a 429 print a skip line
#                     instead of failing.
#   RATE_LIMIT_RECOVERY_SECONDS
#                     how long to sleep after the rate-limit check, so that an
#                     immediate re-run is not limited (default 12: a full
#                     bucket of 100 at the default 600 requests a minute).
#
# The server's rate limiter counts POSTs to register, login, password,
# password/forgot, password/reset and the reset page's form
# (/reset-password) per client address. The script stays
# well under the default burst of 100 until its last check, which floods
# /auth/login with an unknown email (no hashing) until a 429 rate_limited,
# then sleeps RATE_LIMIT_RECOVERY_SECONDS so the bucket refills. Lockout
# checks use an account of their own, so its lock harms nothing else. The
# 503s (overloaded, database_unavailable) cannot be provoked safely against
# an arbitrary server; skip lines name the cargo tests that cover them.
#
# Needs only curl and python3 (python3 parses JSON and builds strings and raw
# requests curl cannot send). Every run uses fresh email addresses, so it can
# be re-run against the same database. It walks every endpoint's success and
# every documented error status and code, printing one line per check:
#   ok   <description>
#   FAIL <description>: expected <x>, got <y>
# then `N passed, M failed`. Exit status: 0 if nothing failed, 1 if something
# did, 2 if a required tool is missing or a setting is invalid. Skipped
# checks count as neither.
# Tokens and passwords never appear in the output; a failing check shows the
# response status and up to 200 characters of its body, except bodies that
# carry a token, which are withheld.

set -uo pipefail

for tool in curl python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "regression.sh: '$tool' is required but was not found in PATH" >&2
        exit 2
    fi
done

# The interpreter itself, not a version-manager shim in front of it: the
# script starts python a few hundred times.
PYTHON=$(python3 -c 'import sys; print(sys.executable)') || PYTHON=python3

BASE_URL="${BASE_URL:-http://localhost:8080}"
BASE_URL="${BASE_URL%/}"
SHORT_TTL="${EXPECT_SHORT_TTL:-0}"
SLOW="${SLOW_CHECKS:-0}"
MAIL_COMMAND="${MAIL_COMMAND:-}"
# Read by the Python snippets too.
export CACERT="${CACERT:-}"
tls_args=()
[[ -n $CACERT ]] && tls_args=(--cacert "$CACERT")
MAILPIT_URL="${MAILPIT_URL:-}"
MAILPIT_URL="${MAILPIT_URL%/}"
if [[ -n $MAIL_COMMAND && -n $MAILPIT_URL ]]; then
    echo "regression.sh: set MAIL_COMMAND or MAILPIT_URL, not both" >&2
    exit 2
fi
# Whether mailed links can be followed.
MAIL=""
[[ -n $MAIL_COMMAND || -n $MAILPIT_URL ]] && MAIL=yes
NO_RATE_LIMIT="${EXPECT_NO_RATE_LIMIT:-0}"
ADMIN_EMAIL="${ADMIN_EMAIL:-}"
ADMIN_PASSWORD="${ADMIN_PASSWORD:-}"
ADMIN_URL="${ADMIN_URL:-$BASE_URL}"
ADMIN_URL="${ADMIN_URL%/}"
RECOVERY_SECONDS="${RATE_LIMIT_RECOVERY_SECONDS:-12}"
WAIT_SECONDS=30
# The flood that must meet the rate limit: the default burst is 100.
FLOOD_MAX=400

if [[ ! $RECOVERY_SECONDS =~ ^[0-9]+$ ]]; then
    echo "regression.sh: RATE_LIMIT_RECOVERY_SECONDS must be a whole number of seconds, got '$RECOVERY_SECONDS'" >&2
    exit 2
fi

RUN_ID="$(date +%s)-$$-$RANDOM"
# Sent on every curl request, so the session list can be checked for it.
UA="regression.sh (run $RUN_ID)"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

PASSED=0
FAILED=0
# The last response: its status code, body text; headers are in $TMP/headers.
STATUS=000
BODY=""

# ---------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------

# req METHOD PATH [curl args...]: sends one request with curl and stores the
# answer in STATUS, BODY and $TMP/headers. STATUS is 000 when curl got no
# response; the reason is then in $TMP/curl.err.
req() {
    local method=$1 path=$2
    shift 2
    : >"$TMP/headers"
    : >"$TMP/body"
    STATUS=$(curl -sS --max-time 30 -A "$UA" -X "$method" "${tls_args[@]}" \
        -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' \
        "$@" "$BASE_URL$path" 2>"$TMP/curl.err")
    [[ -n $STATUS ]] || STATUS=000
    BODY=$(<"$TMP/body")
}

# post_json PATH JSON [curl args...]: POST with a JSON body. The body goes
# through a file so passwords stay off the process list.
post_json() {
    local path=$1 json=$2
    shift 2
    printf '%s' "$json" >"$TMP/request"
    req POST "$path" -H 'Content-Type: application/json' --data-binary @"$TMP/request" "$@"
}

# auth METHOD PATH TOKEN [curl args...]: a request carrying a Bearer token.
auth() {
    local method=$1 path=$2 token=$3
    shift 3
    req "$method" "$path" -H "Authorization: Bearer $token" "$@"
}

# raw_req FILE: sends the bytes of FILE over a plain socket, for requests curl
# will not produce (smuggling shapes, broken heads, a stalled head). "@HOST@"
# in FILE becomes the server's host:port. Stores the answer like req.
raw_req() {
    : >"$TMP/headers"
    : >"$TMP/body"
    STATUS=$("$PYTHON" - "$BASE_URL" "$1" "$TMP/headers" "$TMP/body" <<'PY' 2>"$TMP/curl.err"
import os, socket, ssl, sys, urllib.parse

base, request_file, headers_file, body_file = sys.argv[1:5]
url = urllib.parse.urlsplit(base)
port = url.port or (443 if url.scheme == "https" else 80)
with open(request_file, "rb") as f:
    data = f.read().replace(b"@HOST@", url.netloc.encode())
sock = socket.create_connection((url.hostname, port), timeout=30)
if url.scheme == "https":
    context = ssl.create_default_context(cafile=os.environ.get("CACERT") or None)
    sock = context.wrap_socket(sock, server_hostname=url.hostname)
try:
    sock.sendall(data)
except OSError:
    pass  # the server may answer and close before reading everything
received = b""
try:
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
        head, sep, rest = received.partition(b"\r\n\r\n")
        if sep:
            length = None
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if length is not None and len(rest) >= length:
                break
except OSError:
    pass  # a reset after the answer still leaves the answer
head, _, body = received.partition(b"\r\n\r\n")
with open(headers_file, "wb") as f:
    f.write(head + b"\r\n")
with open(body_file, "wb") as f:
    f.write(body)
parts = head.split(b" ")
print(parts[1].decode() if head.startswith(b"HTTP/") and len(parts) > 1 else "000")
PY
    )
    [[ -n $STATUS ]] || STATUS=000
    BODY=$(<"$TMP/body")
}

# ---------------------------------------------------------------------------
# Reading responses
# ---------------------------------------------------------------------------

# header NAME: prints the value of NAME in the last response (the final
# header block, after any 100 Continue). Returns 1 if it is absent.
header() {
    local want=${1,,} line name value="" found=1
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        if [[ $line == HTTP/* ]]; then
            value=""
            found=1
            continue
        fi
        [[ $line == *:* ]] || continue
        name=${line%%:*}
        if [[ ${name,,} == "$want" ]]; then
            value=${line#*:}
            value=${value#"${value%%[![:space:]]*}"}
            found=0
        fi
    done <"$TMP/headers"
    printf '%s' "$value"
    return "$found"
}

# json_get 'EXPR': evaluates the Python expression EXPR with `d` bound to the
# last response's parsed JSON body. Strings print raw, anything else as JSON
# (so booleans print true/false). Prints nothing and returns 1 if the body is
# not JSON or EXPR fails.
json_get() {
    "$PYTHON" - "$1" "$TMP/body" <<'PY' 2>/dev/null
import json, re, sys
expr, path = sys.argv[1], sys.argv[2]
try:
    with open(path, "rb") as f:
        d = json.loads(f.read())
    value = eval(expr, {"re": re, "d": d})
except Exception:
    sys.exit(1)
print(value if isinstance(value, str) else json.dumps(value))
PY
}

# py CODE [args...]: a small Python computation, for building strings.
py() {
    local code=$1
    shift
    "$PYTHON" -c "$code" "$@"
}

# obj KEY VALUE [KEY VALUE...]: prints a JSON object of string members.
obj() {
    py 'import json, sys; a = sys.argv[1:]; print(json.dumps(dict(zip(a[::2], a[1::2]))))' "$@"
}

# snippet: the last body on one line, cut to 200 characters. A body holding
# a token (a login answer) is withheld so a failure never prints a secret.
snippet() {
    local s=${BODY//$'\r'/}
    s=${s//$'\n'/ }
    if [[ $s == *'"token"'* ]]; then
        s='<body withheld: it carries a token>'
    fi
    printf '%s' "${s:0:200}"
}

# got: the last response in a FAIL line.
got() {
    if [[ $STATUS == 000 ]]; then
        printf 'no response (%s)' "$(tr '\n' ' ' <"$TMP/curl.err")"
    else
        printf '%s %s' "$STATUS" "$(snippet)"
    fi
}

# ---------------------------------------------------------------------------
# Checks: each prints one line and counts once
# ---------------------------------------------------------------------------

pass() {
    PASSED=$((PASSED + 1))
    printf 'ok   %s\n' "$1"
}

fail() {
    FAILED=$((FAILED + 1))
    printf 'FAIL %s: expected %s, got %s\n' "$1" "$2" "$3"
}

skip() {
    printf 'skip %s\n' "$1"
}

# check_status EXPECTED DESC
check_status() {
    if [[ $STATUS == "$1" ]]; then
        pass "$2"
    else
        fail "$2" "status $1" "$(got)"
    fi
}

# check_eq DESC EXPECTED ACTUAL (never pass secrets: ACTUAL is printed on failure)
check_eq() {
    if [[ $3 == "$2" ]]; then
        pass "$1"
    else
        fail "$1" "'$2'" "'$3'"
    fi
}

# check_json DESC EXPR EXPECTED: json_get EXPR on the last body equals EXPECTED.
check_json() {
    local actual
    actual=$(json_get "$2")
    if [[ $actual == "$3" ]]; then
        pass "$1"
    else
        fail "$1" "$2 == $3" "$(got)"
    fi
}

# check_header DESC NAME EXPECTED: the last response's header NAME is exactly EXPECTED.
check_header() {
    local actual
    if ! actual=$(header "$2"); then
        fail "$1" "header $2: $3" "no $2 header ($(got))"
    elif [[ $actual == "$3" ]]; then
        pass "$1"
    else
        fail "$1" "header $2: $3" "$2: $actual"
    fi
}

# check_problem STATUS CODE DESC: the last response is an RFC 9457 problem
# with this HTTP status, Content-Type application/problem+json, body.status
# equal to the HTTP status, body.code CODE, and all the documented members.
check_problem() {
    local want_status=$1 want_code=$2 desc=$3 ctype summary
    ctype=$(header Content-Type)
    summary=$(json_get '"%s %s %s" % (d["status"], d["code"], all(k in d for k in ("type", "title", "detail", "request_id")))')
    if [[ $STATUS != "$want_status" ]]; then
        fail "$desc" "$want_status $want_code" "$(got)"
    elif [[ ${ctype,,} != application/problem+json* ]]; then
        fail "$desc" "Content-Type application/problem+json" "Content-Type '$ctype' ($(got))"
    elif [[ $summary != "$want_status $want_code True" ]]; then
        fail "$desc" "problem body with status $want_status, code $want_code, type/title/detail/request_id" "$(got)"
    else
        pass "$desc"
    fi
}

# check_unauthorized CODE DESC: a 401 problem with CODE and the matching
# WWW-Authenticate challenge (bare for missing_token, error= otherwise).
check_unauthorized() {
    local code=$1 desc=$2 want='Bearer error="invalid_token"' actual
    [[ $code == missing_token ]] && want='Bearer'
    actual=$(header WWW-Authenticate)
    if [[ $STATUS == 401 && $actual != "$want" ]]; then
        fail "$desc" "401 $code with WWW-Authenticate: $want" "WWW-Authenticate: '$actual' ($(got))"
    else
        check_problem 401 "$code" "$desc"
    fi
}

# login EMAIL PASSWORD: logs in and leaves the token in TOKEN ("" on failure).
TOKEN=""
login() {
    post_json /auth/login "$(obj email "$1" password "$2")"
    TOKEN=""
    if [[ $STATUS == 200 ]]; then
        TOKEN=$(json_get 'd["token"]')
    fi
}

# register_ok DESC EMAIL PASSWORD: registers and checks the 201.
register_ok() {
    post_json /auth/register "$(obj email "$2" password "$3")"
    check_status 201 "$1"
}

# email N: a fresh address for this run.
email() {
    printf 'reg-%s-%s@example.com' "$RUN_ID" "$1"
}

# auth_json METHOD PATH TOKEN JSON: a JSON request carrying a Bearer token,
# the body through a file like post_json.
auth_json() {
    local method=$1 path=$2 token=$3 json=$4
    printf '%s' "$json" >"$TMP/request"
    auth "$method" "$path" "$token" -H 'Content-Type: application/json' --data-binary @"$TMP/request"
}

# post_form PATH NAME VALUE [NAME VALUE...]: POSTs an HTML form as a
# browser does (application/x-www-form-urlencoded, built by curl's
# --data-urlencode). Each value goes through a file, so passwords and
# tokens stay off the process list.
post_form() {
    local path=$1 i=0
    local args=()
    shift
    while (($# >= 2)); do
        printf '%s' "$2" >"$TMP/field$i"
        args+=(--data-urlencode "$1@$TMP/field$i")
        i=$((i + 1))
        shift 2
    done
    req POST "$path" "${args[@]}"
}

# check_page STATUS DESC: the last response is an HTML page with this status
# and every header an HTML response carries: Content-Type text/html in
# UTF-8, a Content-Security-Policy that allows only the page's own style
# (by its hash), Referrer-Policy no-referrer, Cache-Control no-store and
# X-Content-Type-Options nosniff. One line for all of them.
CSP_PATTERN="^default-src 'none'; style-src 'sha256-[A-Za-z0-9+/]{43}='; form-action 'self'; frame-ancestors 'none'; base-uri 'none'\$"
check_page() {
    local want=$1 desc=$2 ctype csp referrer cache sniff
    ctype=$(header Content-Type)
    csp=$(header Content-Security-Policy)
    referrer=$(header Referrer-Policy)
    cache=$(header Cache-Control)
    sniff=$(header X-Content-Type-Options)
    if [[ $STATUS != "$want" ]]; then
        fail "$desc" "status $want" "$(got)"
    elif [[ $ctype != "text/html; charset=utf-8" ]]; then
        fail "$desc" "Content-Type text/html; charset=utf-8" "Content-Type '$ctype'"
    elif [[ ! $csp =~ $CSP_PATTERN ]]; then
        fail "$desc" "Content-Security-Policy $CSP_PATTERN" "'$csp'"
    elif [[ $referrer != no-referrer || $cache != no-store || $sniff != nosniff ]]; then
        fail "$desc" "Referrer-Policy no-referrer, Cache-Control no-store, X-Content-Type-Options nosniff" \
            "'$referrer', '$cache', '$sniff'"
    else
        pass "$desc"
    fi
}

# check_body_has DESC TEXT: the last body contains TEXT (which must not be
# a secret: it is printed on failure).
check_body_has() {
    if [[ $BODY == *"$2"* ]]; then
        pass "$1"
    else
        fail "$1" "a body containing '$2'" "$(got)"
    fi
}

# check_retry_after DESC: the last response has Retry-After in whole
# seconds, at least 1 (RFC 9110 also allows a date; this server sends
# seconds).
check_retry_after() {
    local actual
    if ! actual=$(header Retry-After); then
        fail "$1" "a Retry-After header" "no Retry-After header ($(got))"
    elif [[ $actual =~ ^[1-9][0-9]*$ ]]; then
        pass "$1"
    else
        fail "$1" "Retry-After: a whole number of seconds >= 1" "Retry-After: '$actual'"
    fi
}

# mail_bodies EMAIL: prints the newest mails to EMAIL, newest first, from
# MAIL_COMMAND or from the Mailpit API at MAILPIT_URL; errors go to
# $TMP/mail.err and the status is not 0.
mail_bodies() {
    if [[ -n $MAIL_COMMAND ]]; then
        bash -c "$MAIL_COMMAND" _ "$1" 2>"$TMP/mail.err"
        return
    fi
    "$PYTHON" - "$MAILPIT_URL" "$1" <<'PY' 2>"$TMP/mail.err"
import json, sys, urllib.request

base, recipient = sys.argv[1], sys.argv[2].lower()


def get(path):
    with urllib.request.urlopen(base + path, timeout=10) as reply:
        return json.load(reply)


# Newest first; a run sends a few dozen mails, so the last 200 reach back
# past anything this run waits for.
found = 0
for summary in get("/api/v1/messages?limit=200")["messages"]:
    to = [a["Address"].lower() for a in summary["To"] + summary.get("Bcc", [])]
    if recipient in to:
        print(get("/api/v1/message/" + summary["ID"])["Text"])
        found += 1
        if found == 10:
            break
PY
}

# newest_mail_token KIND EMAIL: leaves in MAIL_TOKEN the token of the newest
# KIND link (reset, verify or confirm) in the mails to EMAIL, or "". The
# mails go to python on stdin and no token reaches the output.
MAIL_TOKEN=""
MAIL_TEXT=""
newest_mail_token() {
    local kind=$1 recipient=$2 mail rc
    mail=$(mail_bodies "$recipient")
    rc=$?
    MAIL_TEXT=$mail
    ((rc == 0)) || return "$rc"
    # Base64url has no backslash, so a newline escaped as \n (mysql -N)
    # ends the token just as a real one does.
    MAIL_TOKEN=$(py 'import re, sys
kind = sys.argv[1]
for m in re.finditer(r"(\S*?)[?&]token=([A-Za-z0-9_-]*)", sys.stdin.read()):
    link = m.group(1)
    found = ("verify" if link.endswith("/verify-email") else
             "confirm" if link.endswith("/confirm-email") else "reset")
    if found == kind:
        print(m.group(2))
        break' "$kind" <<<"$mail")
}

# mail_token_for KIND DESC EMAIL [OLD]: waits up to 5 s for a KIND link
# (see newest_mail_token) to EMAIL with a token other than OLD, since the
# server queues the mail a moment after answering (its mail worker
# resolves the request) and the courier delivers it a moment later. Checks
# (as DESC) that there is one, 43 base64url characters, and leaves it in
# MAIL_TOKEN; returns 1 if not.
mail_token_for() {
    local kind=$1 desc=$2 recipient=$3 old=${4:-} rc i
    for i in $(seq 1 50); do
        MAIL_TOKEN=""
        newest_mail_token "$kind" "$recipient"
        rc=$?
        if ((rc != 0)); then
            fail "$desc" "reading the mail to exit 0" \
                "exit status $rc, stderr: '$(head -c 200 "$TMP/mail.err" | tr '\n' ' ')'"
            return 1
        fi
        [[ $MAIL_TOKEN =~ ^[A-Za-z0-9_-]{43}$ && $MAIL_TOKEN != "$old" ]] && break
        sleep 0.1
    done
    if [[ $MAIL_TOKEN =~ ^[A-Za-z0-9_-]{43}$ && $MAIL_TOKEN != "$old" ]]; then
        pass "$desc"
    elif [[ -z $MAIL_TEXT ]]; then
        fail "$desc" "a mail to $recipient" "none"
    elif [[ -z $MAIL_TOKEN ]]; then
        fail "$desc" "a $kind link with ?token= in the mails" "${#MAIL_TEXT} characters without one"
    else
        fail "$desc" "a new token of 43 base64url characters" "a token of ${#MAIL_TOKEN} characters"
    fi
    [[ ${#MAIL_TOKEN} == 43 ]]
}

# flood MAX: POSTs /auth/login for an unknown email (the server answers
# without hashing) over one keep-alive connection until an answer other
# than 404, at most MAX times. Stores the last answer like req and sets
# FLOOD_COUNT to the number of requests sent.
FLOOD_COUNT=0
flood() {
    local out
    : >"$TMP/headers"
    : >"$TMP/body"
    out=$("$PYTHON" - "$BASE_URL" "$UA" "$(email flood)" "$1" "$TMP/headers" "$TMP/body" <<'PY' 2>"$TMP/curl.err"
import http.client, json, os, ssl, sys, urllib.parse

base, ua, email, limit, headers_file, body_file = sys.argv[1:7]
url = urllib.parse.urlsplit(base)
https = url.scheme == "https"
connection_class = http.client.HTTPSConnection if https else http.client.HTTPConnection
port = url.port or (443 if https else 80)
body = json.dumps({"email": email, "password": "Reg-flood-password"}).encode()
headers = {"Content-Type": "application/json", "User-Agent": ua}
conn = None


def send():
    global conn
    if conn is None:
        if https:
            context = ssl.create_default_context(cafile=os.environ.get("CACERT") or None)
            conn = connection_class(url.hostname, port, timeout=30, context=context)
        else:
            conn = connection_class(url.hostname, port, timeout=30)
    conn.request("POST", url.path + "/auth/login", body=body, headers=headers)
    reply = conn.getresponse()
    return reply, reply.read()


for n in range(1, int(limit) + 1):
    try:
        reply, data = send()
    except (OSError, http.client.HTTPException):
        # The server may close a kept-alive connection; one fresh try.
        conn.close()
        conn = None
        reply, data = send()
    if reply.will_close:
        conn.close()
        conn = None
    if reply.status != 404 or n == int(limit):
        break
with open(headers_file, "w") as f:
    f.write("HTTP/1.1 %d %s\r\n" % (reply.status, reply.reason))
    f.writelines("%s: %s\r\n" % pair for pair in reply.getheaders())
with open(body_file, "wb") as f:
    f.write(data)
print(n, reply.status)
PY
    )
    read -r FLOOD_COUNT STATUS <<<"$out"
    [[ -n $STATUS ]] || STATUS=000
    BODY=$(<"$TMP/body")
}

# ---------------------------------------------------------------------------
# Wait for the server
# ---------------------------------------------------------------------------

echo "regression.sh: testing $BASE_URL (run $RUN_ID)"
deadline=$((SECONDS + WAIT_SECONDS))
while :; do
    req GET /healthz --max-time 2
    [[ $STATUS == 200 ]] && break
    if ((SECONDS >= deadline)); then
        fail "GET /healthz answers 200 within ${WAIT_SECONDS} s (is the server running at $BASE_URL?)" "200" "$(got)"
        echo "$PASSED passed, $FAILED failed"
        exit 1
    fi
    sleep 1
done
if [[ $BASE_URL == https://* ]]; then
    hsts=$(header Strict-Transport-Security)
    if [[ $hsts =~ ^max-age=[0-9]+$ ]]; then
        pass "HTTPS answers carry Strict-Transport-Security ($hsts)"
    else
        fail "HTTPS answers carry Strict-Transport-Security" "max-age=N" "'$hsts'"
    fi
fi

# ---------------------------------------------------------------------------
# HTTP layer
# ---------------------------------------------------------------------------

req GET /healthz
check_status 200 "GET /healthz is 200"
check_json "GET /healthz body is {\"status\":\"ok\"}" 'd == {"status": "ok"}' true
check_eq "GET /healthz Content-Type is application/json" "application/json" "$(header Content-Type | cut -d';' -f1)"
check_eq "responses carry X-Request-Id" "yes" "$(header X-Request-Id >/dev/null && echo yes || echo no)"

req GET /nope -H "X-Request-Id: reg-$RUN_ID"
check_problem 404 not_found "GET /nope is 404 not_found"
check_header "a client X-Request-Id is echoed in the header" X-Request-Id "reg-$RUN_ID"
check_json "a client X-Request-Id is echoed as the problem's request_id" 'd["request_id"]' "reg-$RUN_ID"

req DELETE /healthz
check_problem 405 method_not_allowed "DELETE /healthz is 405 method_not_allowed"
check_header "DELETE /healthz lists Allow: GET, HEAD" Allow "GET, HEAD"
req GET /auth/login
check_problem 405 method_not_allowed "GET /auth/login is 405 method_not_allowed"
check_header "GET /auth/login lists Allow: POST" Allow POST
req POST /auth/me
check_problem 405 method_not_allowed "POST /auth/me is 405 method_not_allowed"
check_header "POST /auth/me lists Allow: GET, HEAD, PATCH, DELETE" Allow "GET, HEAD, PATCH, DELETE"
req GET /auth/password/forgot
check_problem 405 method_not_allowed "GET /auth/password/forgot is 405 method_not_allowed"
check_header "GET /auth/password/forgot lists Allow: POST" Allow POST
req GET /auth/password/reset
check_problem 405 method_not_allowed "GET /auth/password/reset is 405 method_not_allowed"
check_header "GET /auth/password/reset lists Allow: POST" Allow POST
req GET "/auth/sessions/0123456789abcdef0123456789abcdef"
check_problem 405 method_not_allowed "GET /auth/sessions/{id} is 405 method_not_allowed"
check_header "GET /auth/sessions/{id} lists Allow: DELETE" Allow DELETE

req POST /auth/register -H 'Content-Type: text/plain' --data-binary '{"email":"a@example.com","password":"x"}'
check_problem 415 unsupported_media_type "register with Content-Type text/plain is 415 unsupported_media_type"
req POST /auth/register -H 'Content-Type:' --data-binary '{"email":"a@example.com","password":"x"}'
check_problem 415 unsupported_media_type "register without Content-Type is 415 unsupported_media_type"

# 70000 bytes, over the 64 KiB limit. Expect: 100-continue makes every curl
# version wait for the server's early answer instead of racing to send it all.
py 'import sys; sys.stdout.write("{\"email\":\"" + "a" * (70000 - 14) + "\"}")' >"$TMP/big.json"
req POST /auth/register -H 'Content-Type: application/json' -H 'Expect: 100-continue' --data-binary @"$TMP/big.json"
check_problem 413 payload_too_large "a 70000-byte body is 413 payload_too_large"

printf -v big '%17408s' ''
req GET /healthz -H "X-Big: ${big// /x}"
check_problem 431 headers_too_large "a 17 KiB header is 431 headers_too_large"
many=()
for i in $(seq 1 65); do
    many+=(-H "X-Field-$i: $i")
done
req GET /healthz "${many[@]}"
check_problem 431 headers_too_large "65 header fields are 431 headers_too_large"

req POST /auth/register -H 'Content-Type: application/json' -H 'Expect: something-else' --data-binary '{}'
check_problem 417 expectation_failed "Expect: something-else is 417 expectation_failed"

# Framing errors are sent raw: curl versions differ in what they let through.
printf 'POST /auth/register HTTP/1.1\r\nHost: @HOST@\r\nContent-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' >"$TMP/raw"
raw_req "$TMP/raw"
check_problem 400 bad_request "Content-Length with Transfer-Encoding is 400 bad_request"
check_eq "Content-Length with Transfer-Encoding closes the connection" "close" "$(header Connection)"
printf 'POST /auth/register HTTP/1.1\r\nHost: @HOST@\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}' >"$TMP/raw"
raw_req "$TMP/raw"
check_problem 400 bad_request "differing Content-Lengths are 400 bad_request"
printf 'POST /auth/register HTTP/1.1\r\nHost: @HOST@\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip\r\n\r\n' >"$TMP/raw"
raw_req "$TMP/raw"
check_problem 400 bad_request "Transfer-Encoding other than chunked is 400 bad_request"
printf 'POST /auth/register HTTP/1.1\r\nHost: @HOST@\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n' >"$TMP/raw"
raw_req "$TMP/raw"
check_problem 400 bad_request "bad chunking is 400 bad_request"
printf 'GET /healthz HTTP/1.1\r\n\r\n' >"$TMP/raw"
raw_req "$TMP/raw"
check_problem 400 bad_request "HTTP/1.1 without Host is 400 bad_request"
printf 'GET /healthz HTTP/1.1 extra\r\nHost: @HOST@\r\n\r\n' >"$TMP/raw"
raw_req "$TMP/raw"
check_problem 400 bad_request "a malformed request line is 400 bad_request"

if [[ $SLOW == 1 ]]; then
    printf 'GET /healthz HTTP/1.1\r\nHost: @HOST@\r\n' >"$TMP/raw"
    raw_req "$TMP/raw"
    check_problem 408 request_timeout "a head that never ends is 408 request_timeout"
else
    skip "408 request_timeout (waits HEADER_TIMEOUT_MS; set SLOW_CHECKS=1; covered by cargo test --test http: slowloris_is_cut_at_the_header_deadline_while_others_are_served, slow_body_is_cut_at_the_body_deadline)"
fi
# Producing these would mean starving this server of hashing slots or
# connections, or stopping its database.
skip "503 overloaded (needs a full hashing queue or every connection busy; covered by cargo test --test http: when_every_connection_is_busy_the_server_answers_503_and_closes, and --test defences: a_full_hashing_queue_answers_503_and_never_delays_requests_without_hashing)"
skip "503 database_unavailable (needs the database down; covered by cargo test --test http: database_outage_answers_503_quickly_and_recovers, when_every_connection_is_busy_the_server_answers_503_and_closes)"

# ---------------------------------------------------------------------------
# POST /auth/register
# ---------------------------------------------------------------------------

PASS_A="Reg-pass-$RUN_ID-a"
EMAIL_A=$(email a)
EMAIL_A_MIXED="Reg-${RUN_ID}-A@Example.COM" # lowercases to EMAIL_A

post_json /auth/register "$(obj email "$EMAIL_A_MIXED" password "$PASS_A")"
check_status 201 "register is 201"
check_eq "register answers Content-Type application/json" "application/json" "$(header Content-Type | cut -d';' -f1)"
check_json "register stores the email lowercased" 'd["user"]["email"]' "$EMAIL_A"
check_json "register answers user id and created_at" \
    'isinstance(d["user"]["id"], int) and bool(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", d["user"]["created_at"]))' true
check_json "register answer has no password or hash" \
    'not any("pass" in k.lower() or "hash" in k.lower() for k in list(d) + list(d["user"]))' true
check_eq "register answer does not echo the password" "no" "$([[ $BODY == *"$PASS_A"* ]] && echo yes || echo no)"
USER_A_ID=$(json_get 'd["user"]["id"]')

post_json /auth/register "$(obj email "${EMAIL_A^^}" password "$PASS_A")"
check_problem 409 email_taken "register with the same email in other case is 409 email_taken"

for bad in "no-at-sign.example.com" "two@@example.com" "a@b@example.com" "@example.com" \
    "user@localhost" "sp ace@example.com" "$(printf 'x%.0s' $(seq 1 250))@example.com"; do
    post_json /auth/register "$(obj email "$bad" password "$PASS_A")"
    check_problem 422 invalid_email "register with email '${bad:0:40}' is 422 invalid_email"
done

post_json /auth/register "$(obj email "$(email short)" password "Sh0rt-7")"
check_problem 422 weak_password "register with a 7-character password is 422 weak_password"
post_json /auth/register "$(obj email "$(email short2)" password "ééééééé")"
check_problem 422 weak_password "register with 7 two-byte characters (14 bytes) is 422 weak_password"
post_json /auth/register "$(obj email "$(email long)" password "$(printf 'L%.0s' $(seq 1 257))")"
check_problem 422 weak_password "register with a 257-character password is 422 weak_password"
post_json /auth/register "$(obj email "$(email common1)" password "password")"
check_problem 422 weak_password "register with common password 'password' is 422 weak_password"
post_json /auth/register "$(obj email "$(email common2)" password "12345678")"
check_problem 422 weak_password "register with common password '12345678' is 422 weak_password"
post_json /auth/register "$(obj email "$(email same)" password "$(email same | tr '[:lower:]' '[:upper:]')")"
check_problem 422 weak_password "register with the password equal to the email is 422 weak_password"

register_ok "register with 8 two-byte characters (counted as chars) is 201" "$(email unicode)" "éééééééé"
register_ok "register with a 256-character password is 201" "$(email max)" "$(printf 'M%.0s' $(seq 1 256))"
post_json /auth/register "$(obj email "$(email charset)" password "$PASS_A" extra ignored)" \
    -H 'Content-Type: application/json; charset=utf-8'
check_status 201 "register with charset parameter and an unknown member is 201"

# bad_bodies PATH DESC-PREFIX: the shared 400s of the JSON endpoints.
bad_bodies() {
    local path=$1 what=$2 body
    for body in '' 'null' '[]' '"a string"' '{"email":"x@example.com"' '{"email": 1,}'; do
        post_json "$path" "$body"
        check_problem 400 malformed_json "$what with body '$body' is 400 malformed_json"
    done
    printf '{"email":"\xff@example.com","password":"Reg-pass-x1"}' >"$TMP/request"
    req POST "$path" -H 'Content-Type: application/json' --data-binary @"$TMP/request"
    check_problem 400 malformed_json "$what with invalid UTF-8 is 400 malformed_json"
    post_json "$path" '{"email":"x@example.com"}'
    check_problem 400 missing_field "$what without password is 400 missing_field"
    post_json "$path" '{"password":"Reg-pass-x1","new_password":"Reg-pass-x1","current_password":"Reg-pass-x1"}'
    check_problem 400 missing_field "$what without email is 400 missing_field"
    post_json "$path" '{"email":"x@example.com","password":12345678,"current_password":12345678,"new_password":"Reg-pass-x1"}'
    check_problem 400 invalid_field "$what with a number as password is 400 invalid_field"
    check_json "$what invalid_field detail names the member" '"password" in d["detail"]' true
    post_json "$path" '{"email":["x@example.com"],"password":"Reg-pass-x1","current_password":"Reg-pass-x1","new_password":"Reg-pass-x1"}'
    check_problem 400 invalid_field "$what with an array as email is 400 invalid_field"
    check_json "$what invalid_field detail names the email member" '"email" in d["detail"]' true
}
bad_bodies /auth/register "register"

# ---------------------------------------------------------------------------
# POST /auth/login
# ---------------------------------------------------------------------------

login "$EMAIL_A" "$PASS_A"
check_status 200 "login is 200"
check_eq "login gives a token" "yes" "$([[ -n $TOKEN ]] && echo yes || echo no)"
check_json "login token_type is Bearer" 'd["token_type"]' Bearer
check_json "login expires_in is a positive integer" 'isinstance(d["expires_in"], int) and d["expires_in"] > 0' true
check_json "login expires_at is RFC 3339" 'bool(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", d["expires_at"]))' true
check_json "login user is the registered user" '[d["user"]["id"], d["user"]["email"]]' "[$USER_A_ID, \"$EMAIL_A\"]"
check_json "login answer has no password or hash" \
    'not any("pass" in k.lower() or "hash" in k.lower() for k in list(d) + list(d["user"]))' true
# expires_at - Date header == expires_in, within the seconds that can tick by.
date_header=$(header Date)
check_json "login expires_at is the response Date plus expires_in" \
    'abs(__import__("datetime").datetime.fromisoformat(d["expires_at"].replace("Z", "+00:00")).timestamp() - __import__("email.utils").utils.parsedate_to_datetime("'"$date_header"'").timestamp() - d["expires_in"]) <= 2' true
TOKEN_A=$TOKEN

login "${EMAIL_A^^}" "$PASS_A"
check_status 200 "login with the email in upper case is 200"

login "$(email nobody)" "$PASS_A"
check_problem 404 unknown_email "login with an unregistered email is 404 unknown_email"
login "not-an-email" "$PASS_A"
check_problem 404 unknown_email "login with an invalid-format email is 404 unknown_email"
login "$EMAIL_A" "$PASS_A-wrong"
check_problem 401 wrong_password "login with a wrong password is 401 wrong_password"
req POST /auth/login -H 'Content-Type: text/plain' --data-binary "$(obj email "$EMAIL_A")"
check_problem 415 unsupported_media_type "login with Content-Type text/plain is 415 unsupported_media_type"
bad_bodies /auth/login "login"

# ---------------------------------------------------------------------------
# POST /auth/password/forgot
# ---------------------------------------------------------------------------

# The answer must not tell whether an account exists: same status, same body.
post_json /auth/password/forgot "$(obj email "$EMAIL_A")"
check_status 202 "forgot for a registered email is 202"
check_eq "forgot answers Content-Type application/json" "application/json" "$(header Content-Type | cut -d';' -f1)"
check_json "forgot answers status accepted with a detail" \
    'd["status"] == "accepted" and isinstance(d["detail"], str) and d["detail"] != ""' true
FORGOT_BODY=$BODY
post_json /auth/password/forgot "$(obj email "$(email nobody)")"
check_status 202 "forgot for an unregistered email is 202"
check_eq "forgot answers an unregistered email with the identical body" "$FORGOT_BODY" "$BODY"
post_json /auth/password/forgot "$(obj email "not-an-email")"
check_status 202 "forgot for an invalid-format email is 202"
check_eq "forgot answers an invalid-format email with the identical body" "$FORGOT_BODY" "$BODY"

post_json /auth/password/forgot '{}'
check_problem 400 missing_field "forgot without email is 400 missing_field"
post_json /auth/password/forgot '{"email":1}'
check_problem 400 invalid_field "forgot with a number as email is 400 invalid_field"
post_json /auth/password/forgot 'null'
check_problem 400 malformed_json "forgot with body null is 400 malformed_json"
req POST /auth/password/forgot -H 'Content-Type: text/plain' --data-binary "$(obj email "$EMAIL_A")"
check_problem 415 unsupported_media_type "forgot with Content-Type text/plain is 415 unsupported_media_type"

# ---------------------------------------------------------------------------
# POST /auth/password/reset: what needs no mailed token
# ---------------------------------------------------------------------------

# Well-formed (43 base64url characters) but never issued.
UNKNOWN_RESET=$(py 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode())')
post_json /auth/password/reset "$(obj token "$UNKNOWN_RESET" new_password "Reg-new-pass-$RUN_ID-u")"
check_problem 400 invalid_reset_token "reset with an unknown token is 400 invalid_reset_token"
post_json /auth/password/reset "$(obj token "$UNKNOWN_RESET" new_password "password")"
check_problem 400 invalid_reset_token "reset with an unknown token and a weak password is 400 invalid_reset_token (token checked first)"
post_json /auth/password/reset "$(obj token "" new_password "Reg-new-pass-$RUN_ID-u")"
check_problem 400 invalid_reset_token "reset with an empty token is 400 invalid_reset_token"
post_json /auth/password/reset "$(obj new_password "Reg-new-pass-$RUN_ID-u")"
check_problem 400 missing_field "reset without token is 400 missing_field"
post_json /auth/password/reset "$(obj token "$UNKNOWN_RESET")"
check_problem 400 missing_field "reset without new_password is 400 missing_field"
post_json /auth/password/reset '{"token":12345,"new_password":"Reg-pass-x1"}'
check_problem 400 invalid_field "reset with a number as token is 400 invalid_field"
post_json /auth/password/reset '[]'
check_problem 400 malformed_json "reset with body [] is 400 malformed_json"
req POST /auth/password/reset -H 'Content-Type: text/plain' --data-binary '{}'
check_problem 415 unsupported_media_type "reset with Content-Type text/plain is 415 unsupported_media_type"

# ---------------------------------------------------------------------------
# The reset page (GET and POST /reset-password): what needs no mailed token
# ---------------------------------------------------------------------------

req GET /reset-password
check_page 400 "GET /reset-password without a token is a 400 HTML page with the security headers"
check_body_has "the page without a token says the link is incomplete" "This link is incomplete"
req GET "/reset-password?token=$UNKNOWN_RESET"
check_page 400 "GET /reset-password with an unknown token is a 400 HTML page"
check_body_has "the page for an unknown token says the link no longer works" "This link no longer works"
post_form /reset-password token "$UNKNOWN_RESET" new_password "Reg-new-pass-$RUN_ID-u" confirm_password "Reg-new-pass-$RUN_ID-u"
check_page 400 "POST /reset-password with an unknown token is a 400 HTML page"
check_body_has "the form with an unknown token says the link no longer works" "This link no longer works"
post_form /reset-password token "$UNKNOWN_RESET" new_password "Reg-new-pass-$RUN_ID-u"
check_page 400 "POST /reset-password without confirm_password is a 400 HTML page"
check_body_has "the page names the missing field" "missing its &quot;confirm_password&quot; field"
post_form /reset-password token "$UNKNOWN_RESET" token "$UNKNOWN_RESET" new_password "Reg-new-pass-$RUN_ID-u" confirm_password "Reg-new-pass-$RUN_ID-u"
check_page 400 "POST /reset-password with the token field twice is a 400 HTML page"
check_body_has "the page says a field is duplicated" "more than once"
post_json /reset-password "$(obj token "$UNKNOWN_RESET" new_password "Reg-new-pass-$RUN_ID-u" confirm_password "Reg-new-pass-$RUN_ID-u")"
check_page 400 "POST /reset-password with a JSON body is a 400 HTML page, not problem+json"
check_body_has "the page says the form was not sent as a form" "not sent as an HTML form"
req PUT /reset-password
check_problem 405 method_not_allowed "PUT /reset-password is 405 method_not_allowed"
check_header "PUT /reset-password lists Allow: GET, HEAD, POST" Allow "GET, HEAD, POST"

# ---------------------------------------------------------------------------
# Token-lifetime sections: need a token to stay valid for a few seconds
# ---------------------------------------------------------------------------

# tamper TOKEN: the same token with one signature character changed.
tamper() {
    py 'import sys
p, s = sys.argv[1].split(".")
i = len(s) // 2
print(p + "." + s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1:])' "$1"
}

# retarget TOKEN: the token's payload with user id + 1, old signature kept.
retarget() {
    py 'import base64, sys
p, s = sys.argv[1].split(".")
raw = bytearray(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
raw[12] ^= 1  # low byte of the user id (version 1 + key id 4 + u64 BE)
print(base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode() + "." + s)' "$1"
}

# forge TOKEN: the token's payload signed with a secret the server lacks.
forge() {
    py 'import base64, hashlib, hmac, sys
p = sys.argv[1].split(".")[0]
mac = hmac.new(b"not-the-server-secret-not-the-server-secret", p.encode(), hashlib.sha256).digest()
print(p + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode())' "$1"
}

section_me() {
    auth GET /auth/me "$TOKEN_A"
    check_status 200 "GET /auth/me is 200"
    check_json "GET /auth/me answers the user" '[d["user"]["id"], d["user"]["email"]]' "[$USER_A_ID, \"$EMAIL_A\"]"
    req GET /auth/me -H "Authorization: bearer $TOKEN_A"
    check_status 200 "GET /auth/me with scheme 'bearer' in lower case is 200"

    req GET /auth/me
    check_unauthorized missing_token "GET /auth/me without Authorization is 401 missing_token"
    req GET /auth/me -H 'Authorization;'
    check_unauthorized missing_token "GET /auth/me with an empty Authorization is 401 missing_token"
    auth GET /auth/me "$(tamper "$TOKEN_A")"
    check_unauthorized invalid_token "GET /auth/me with a tampered signature is 401 invalid_token"
    auth GET /auth/me "$(retarget "$TOKEN_A")"
    check_unauthorized invalid_token "GET /auth/me with a tampered payload is 401 invalid_token"
    auth GET /auth/me "$(forge "$TOKEN_A")"
    check_unauthorized invalid_token "GET /auth/me signed with another secret is 401 invalid_token"
    auth GET /auth/me "not-a-token"
    check_unauthorized invalid_token "GET /auth/me with garbage is 401 invalid_token"
    req GET /auth/me -H "Authorization: Basic $(printf 'u:p' | base64)"
    check_unauthorized invalid_token "GET /auth/me with the Basic scheme is 401 invalid_token"

    auth_json PATCH /auth/me "$TOKEN_A" '{"name": "Regression User", "locale": "fr-FR", "metadata": {"run": "regression"}}'
    check_json "PATCH /auth/me changes the profile without the password" \
        '[d["user"]["name"], d["user"]["locale"], d["user"]["metadata"]]' '["Regression User", "fr-FR", {"run": "regression"}]'
    auth_json PATCH /auth/me "$TOKEN_A" '{"locale": "not a tag"}'
    check_problem 422 invalid_profile "PATCH /auth/me with a locale that is not a language tag is 422 invalid_profile"
    auth_json PATCH /auth/me "$TOKEN_A" '{"name": 7}'
    check_problem 400 invalid_field "PATCH /auth/me with a name that is not a string is 400 invalid_field"
    auth GET /auth/me "$TOKEN_A"
    check_json "a refused profile change wrote nothing" '[d["user"]["name"], d["user"]["locale"]]' '["Regression User", "fr-FR"]'
}

section_sessions() {
    local email_s pass_s t1 t2 other current a_session
    email_s=$(email sessions)
    pass_s="Reg-pass-$RUN_ID-s"
    register_ok "register the sessions user" "$email_s" "$pass_s"
    login "$email_s" "$pass_s"
    t1=$TOKEN
    login "$email_s" "$pass_s"
    t2=$TOKEN
    check_eq "two logins give two tokens" "yes" "$([[ -n $t1 && -n $t2 && $t1 != "$t2" ]] && echo yes || echo no)"

    auth GET /auth/sessions "$t2"
    check_status 200 "GET /auth/sessions is 200"
    check_json "GET /auth/sessions lists 2 sessions after 2 logins" 'len(d["sessions"])' 2
    check_json "exactly one session is current" 'sum(1 for s in d["sessions"] if s["current"] is True)' 1
    check_json "sessions have 32-hex ids and all members" \
        'all(re.fullmatch(r"[0-9a-f]{32}", s["id"]) and {"created_at", "expires_at", "ip", "user_agent", "current"} <= set(s) for s in d["sessions"])' true
    check_json "sessions record the client's User-Agent and an ip" \
        'all(s["user_agent"] == "'"$UA"'" and isinstance(s["ip"], str) and s["ip"] != "" for s in d["sessions"])' true
    check_json "sessions are listed newest first" \
        '[s["created_at"] for s in d["sessions"]] == sorted([s["created_at"] for s in d["sessions"]], reverse=True)' true
    other=$(json_get '[s["id"] for s in d["sessions"] if not s["current"]][0]')
    current=$(json_get '[s["id"] for s in d["sessions"] if s["current"]][0]')

    auth GET /auth/sessions "$TOKEN_A"
    a_session=$(json_get '[s["id"] for s in d["sessions"] if s["current"]][0]')
    auth DELETE "/auth/sessions/$a_session" "$t2"
    check_problem 404 not_found "DELETE another user's session is 404 not_found"
    auth GET /auth/me "$TOKEN_A"
    check_status 200 "the other user's session survives the attempt"
    auth DELETE /auth/sessions/00000000000000000000000000000000 "$t2"
    check_problem 404 not_found "DELETE an unknown session id is 404 not_found"
    auth DELETE /auth/sessions/not-a-session-id "$t2"
    check_problem 404 not_found "DELETE a malformed session id is 404 not_found"
    auth DELETE /auth/sessions/ "$t2"
    check_problem 404 not_found "DELETE /auth/sessions/ (no id) is 404 not_found"
    req DELETE "/auth/sessions/$other"
    check_unauthorized missing_token "DELETE /auth/sessions/{id} without a token is 401 missing_token"
    req GET /auth/sessions
    check_unauthorized missing_token "GET /auth/sessions without a token is 401 missing_token"
    auth GET /auth/sessions "$(tamper "$t2")"
    check_unauthorized invalid_token "GET /auth/sessions with a tampered token is 401 invalid_token"

    auth DELETE "/auth/sessions/$other" "$t2"
    check_status 204 "DELETE the other session is 204"
    check_eq "204 has an empty body" "" "$BODY"
    auth GET /auth/me "$t1"
    check_unauthorized token_revoked "the deleted session's token is 401 token_revoked"
    auth GET /auth/sessions "$t2"
    check_json "one session is left, the current one" '[(s["id"], s["current"]) for s in d["sessions"]]' "[[\"$current\", true]]"
    auth DELETE "/auth/sessions/$other" "$t2"
    check_problem 404 not_found "DELETE an already deleted session is 404 not_found"
    auth DELETE "/auth/sessions/$current" "$t2"
    check_status 204 "DELETE the current session is 204"
    auth GET /auth/me "$t2"
    check_unauthorized token_revoked "after deleting its own session the token is 401 token_revoked"
}

section_logout() {
    local email_l pass_l t t1 t2 t3
    email_l=$(email logout)
    pass_l="Reg-pass-$RUN_ID-l"
    register_ok "register the logout user" "$email_l" "$pass_l"

    req POST /auth/logout
    check_unauthorized missing_token "logout without a token is 401 missing_token"
    req POST /auth/logout-all
    check_unauthorized missing_token "logout-all without a token is 401 missing_token"
    auth POST /auth/logout "$(tamper "$TOKEN_A")"
    check_unauthorized invalid_token "logout with a tampered token is 401 invalid_token"

    login "$email_l" "$pass_l"
    t=$TOKEN
    auth POST /auth/logout "$t"
    check_status 204 "logout is 204"
    check_eq "logout 204 has an empty body" "" "$BODY"
    auth GET /auth/me "$t"
    check_unauthorized token_revoked "after logout the token is 401 token_revoked"
    auth POST /auth/logout "$t"
    check_unauthorized token_revoked "logout again is 401 token_revoked"

    login "$email_l" "$pass_l"
    t1=$TOKEN
    login "$email_l" "$pass_l"
    t2=$TOKEN
    login "$email_l" "$pass_l"
    t3=$TOKEN
    auth POST /auth/logout-all "$t1"
    check_status 204 "logout-all is 204"
    auth GET /auth/me "$t1"
    check_unauthorized token_revoked "after logout-all the calling token is 401 token_revoked"
    auth GET /auth/me "$t2"
    check_unauthorized token_revoked "after logout-all a second token is 401 token_revoked"
    auth GET /auth/me "$t3"
    check_unauthorized token_revoked "after logout-all a third token is 401 token_revoked"
    auth POST /auth/logout-all "$t2"
    check_unauthorized token_revoked "logout-all with a revoked token is 401 token_revoked"
    auth GET /auth/me "$TOKEN_A"
    check_status 200 "logout-all leaves other users' sessions alone"
    login "$email_l" "$pass_l"
    auth GET /auth/me "$TOKEN"
    check_status 200 "a login after logout-all works"
}

# section_refresh: refresh tokens: rotation, the grace for the token just
# traded, reuse two generations back ending the session, the two kinds of
# token kept apart, and logout ending the refresh token too.
section_refresh() {
    local email_f pass_f first second third access rt
    email_f=$(email refresh)
    pass_f="Reg-pass-$RUN_ID-f"
    register_ok "register the refresh user" "$email_f" "$pass_f"
    login "$email_f" "$pass_f"
    check_json "login gives a refresh token of 99 base64url characters" \
        'bool(re.fullmatch(r"[A-Za-z0-9_-]{55}\.[A-Za-z0-9_-]{43}", d["refresh_token"]))' true
    check_json "login's refresh_expires_at is RFC 3339 and after expires_at" \
        'bool(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", d["refresh_expires_at"])) and d["refresh_expires_at"] > d["expires_at"]' true
    first=$(json_get 'd["refresh_token"]')
    access=$TOKEN

    post_json /auth/refresh "$(obj refresh_token "$first")"
    check_status 200 "POST /auth/refresh is 200"
    check_json "refresh answers like login: a Bearer token, a refresh token, the user" \
        '[d["token_type"], len(d["refresh_token"]), d["user"]["email"], d["expires_in"] > 0]' \
        "[\"Bearer\", 99, \"$email_f\", true]"
    second=$(json_get 'd["refresh_token"]')
    check_eq "the refresh token rotated (tokens not shown)" "new" "$([[ $second != "$first" ]] && echo new || echo same)"
    auth GET /auth/me "$(json_get 'd["token"]')"
    check_status 200 "the refreshed access token works"
    auth GET /auth/me "$access"
    check_status 200 "the login's access token still works until it expires"

    # Within REFRESH_REUSE_GRACE_SECONDS (10 s by default) the token just
    # traded is answered with the current pair again.
    post_json /auth/refresh "$(obj refresh_token "$first")"
    check_status 200 "the token just traded, at once again, is 200 (the reuse grace)"
    check_eq "within the grace it answers the current refresh token, not a new one (tokens not shown)" \
        "current" "$([[ $(json_get 'd["refresh_token"]') == "$second" ]] && echo current || echo other)"
    post_json /auth/refresh "$(obj refresh_token "$second")"
    check_status 200 "the current refresh token rotates"
    third=$(json_get 'd["refresh_token"]')
    auth GET /auth/sessions "$(json_get 'd["token"]')"
    check_json "the session list shows last_refreshed_at" \
        '[s["last_refreshed_at"] is not None for s in d["sessions"]]' "[true]"
    post_json /auth/refresh "$(obj refresh_token "$first")"
    check_problem 401 refresh_token_reused "a refresh token two generations back is 401 refresh_token_reused"
    post_json /auth/refresh "$(obj refresh_token "$third")"
    check_problem 401 invalid_refresh_token "after a reuse the newest refresh token is 401 invalid_refresh_token"
    auth GET /auth/me "$access"
    check_unauthorized token_revoked "after a reuse the session's access token is 401 token_revoked"

    login "$email_f" "$pass_f"
    rt=$(json_get 'd["refresh_token"]')
    post_json /auth/refresh "$(obj refresh_token "$TOKEN")"
    check_problem 401 invalid_refresh_token "an access token at /auth/refresh is 401 invalid_refresh_token"
    auth GET /auth/me "$rt"
    check_unauthorized invalid_token "a refresh token as Bearer is 401 invalid_token"
    post_json /auth/refresh "$(obj refresh_token "$(tamper "$rt")")"
    check_problem 401 invalid_refresh_token "a tampered refresh token is 401 invalid_refresh_token"
    post_json /auth/refresh '{}'
    check_problem 400 missing_field "refresh without refresh_token is 400 missing_field"
    req POST /auth/refresh -H 'Content-Type: text/plain' --data-binary "$(obj refresh_token "$rt")"
    check_problem 415 unsupported_media_type "refresh with Content-Type text/plain is 415 unsupported_media_type"
    req GET /auth/refresh
    check_problem 405 method_not_allowed "GET /auth/refresh is 405 method_not_allowed"
    auth POST /auth/logout "$TOKEN"
    check_status 204 "logout of the refresh user's new session is 204"
    post_json /auth/refresh "$(obj refresh_token "$rt")"
    check_problem 401 invalid_refresh_token "after logout its refresh token is 401 invalid_refresh_token"
}

section_password() {
    local email_p pass_p new_p t
    email_p=$(email password)
    pass_p="Reg-pass-$RUN_ID-p"
    new_p="Reg-new-pass-$RUN_ID-p"
    register_ok "register the password user" "$email_p" "$pass_p"
    login "$email_p" "$pass_p"
    t=$TOKEN

    post_json /auth/password "$(obj email "$email_p" current_password "$pass_p-wrong" new_password "$new_p")"
    check_problem 401 wrong_password "password change with a wrong current password is 401 wrong_password"
    post_json /auth/password "$(obj email "$(email nobody)" current_password "$pass_p" new_password "$new_p")"
    check_problem 404 unknown_email "password change for an unregistered email is 404 unknown_email"
    post_json /auth/password "$(obj email "not-an-email" current_password "$pass_p" new_password "$new_p")"
    check_problem 404 unknown_email "password change with an invalid-format email is 404 unknown_email"
    post_json /auth/password "$(obj email "$email_p" current_password "$pass_p" new_password "password")"
    check_problem 422 weak_password "password change to 'password' is 422 weak_password"
    post_json /auth/password "$(obj email "$email_p" current_password "$pass_p" new_password "short7!")"
    check_problem 422 weak_password "password change to 7 characters is 422 weak_password"
    post_json /auth/password "$(obj email "$email_p" current_password "$pass_p" new_password "${email_p^^}")"
    check_problem 422 weak_password "password change to the email is 422 weak_password"
    post_json /auth/password "$(obj email "$email_p" current_password "$pass_p")"
    check_problem 400 missing_field "password change without new_password is 400 missing_field"
    post_json /auth/password "$(obj email "$email_p" new_password "$new_p")"
    check_problem 400 missing_field "password change without current_password is 400 missing_field"
    post_json /auth/password '{"email":"x@example.com","current_password":"Reg-pass-x1","new_password":12345678}'
    check_problem 400 invalid_field "password change with a number as new_password is 400 invalid_field"
    post_json /auth/password 'null'
    check_problem 400 malformed_json "password change with body null is 400 malformed_json"
    req POST /auth/password -H 'Content-Type: text/plain' --data-binary '{}'
    check_problem 415 unsupported_media_type "password change with Content-Type text/plain is 415 unsupported_media_type"
    auth GET /auth/me "$t"
    check_status 200 "failed password changes leave the session alone"

    post_json /auth/password "$(obj email "${email_p^^}" current_password "$pass_p" new_password "$new_p")"
    check_status 204 "password change is 204"
    check_eq "password change 204 has an empty body" "" "$BODY"
    auth GET /auth/me "$t"
    check_unauthorized token_revoked "after a password change the old token is 401 token_revoked"
    login "$email_p" "$pass_p"
    check_problem 401 wrong_password "login with the old password is 401 wrong_password"
    login "$email_p" "$new_p"
    check_status 200 "login with the new password is 200"
    auth GET /auth/me "$TOKEN"
    check_status 200 "the new token works"
}

section_update_me() {
    local email_u pass_u new_u t now_u
    email_u=$(email update)
    pass_u="Reg-pass-$RUN_ID-u"
    new_u=$(email updated)
    register_ok "register the email-change user" "$email_u" "$pass_u"
    login "$email_u" "$pass_u"
    t=$TOKEN
    now_u=$email_u

    # A move waits for the link mailed to the new address.
    auth_json PATCH /auth/me "$t" "$(obj email "${new_u^^}" current_password "$pass_u")"
    check_status 202 "PATCH /auth/me with a new email is 202"
    check_json "PATCH /auth/me answers status pending and the new email, lowercased" \
        '[d["status"], d["email"]]' "[\"pending\", \"$new_u\"]"
    auth GET /auth/me "$t"
    check_json "until it is confirmed GET /auth/me answers the old email" 'd["user"]["email"]' "$email_u"
    login "$email_u" "$pass_u"
    check_status 200 "until it is confirmed the old email logs in"
    if [[ -n $MAIL ]]; then
        mail_token_for confirm "the new address gets a confirmation link" "$new_u" && {
            local token=$MAIL_TOKEN
            post_json /auth/email/confirm "$(obj token "$token")"
            check_status 200 "POST /auth/email/confirm with the mailed token is 200"
            check_json "the confirmed account has the new, verified email" \
                '[d["user"]["email"], d["user"]["email_verified"]]' "[\"$new_u\", true]"
            now_u=$new_u
            auth GET /auth/me "$t"
            check_json "GET /auth/me then answers the new email" 'd["user"]["email"]' "$new_u"
            login "$email_u" "$pass_u"
            check_problem 404 unknown_email "login with the old email after the move is 404 unknown_email"
            login "$new_u" "$pass_u"
            check_status 200 "login with the new email is 200"
            post_json /auth/email/confirm "$(obj token "$token")"
            check_problem 400 invalid_confirmation_token "the used confirmation token again is 400 invalid_confirmation_token"
        }
    fi

    auth_json PATCH /auth/me "$t" "$(obj email "$(email update2)" current_password "$pass_u-wrong")"
    check_problem 401 wrong_password "PATCH /auth/me with a wrong current password is 401 wrong_password"
    auth_json PATCH /auth/me "$t" "$(obj email "${EMAIL_A^^}" current_password "$pass_u")"
    check_problem 409 email_taken "PATCH /auth/me to another user's email (other case) is 409 email_taken"
    auth_json PATCH /auth/me "$t" "$(obj email "not-an-email" current_password "$pass_u")"
    check_problem 422 invalid_email "PATCH /auth/me to an invalid email is 422 invalid_email"
    auth_json PATCH /auth/me "$t" "$(obj email "$(email update3)")"
    check_problem 400 missing_field "PATCH /auth/me without current_password is 400 missing_field"
    auth PATCH /auth/me "$t" -H 'Content-Type: text/plain' --data-binary '{}'
    check_problem 415 unsupported_media_type "PATCH /auth/me with Content-Type text/plain is 415 unsupported_media_type"
    printf '%s' "$(obj email "$(email update4)" current_password "$pass_u")" >"$TMP/request"
    req PATCH /auth/me -H 'Content-Type: application/json' --data-binary @"$TMP/request"
    check_unauthorized missing_token "PATCH /auth/me without a token is 401 missing_token"
    auth_json PATCH /auth/me "$(tamper "$t")" "$(obj email "$(email update5)" current_password "$pass_u")"
    check_unauthorized invalid_token "PATCH /auth/me with a tampered token is 401 invalid_token"
    auth GET /auth/me "$t"
    check_json "failed email changes leave the email alone" 'd["user"]["email"]' "$now_u"
}

section_delete_me() {
    local email_d pass_d t1 t2
    email_d=$(email delete)
    pass_d="Reg-pass-$RUN_ID-d"
    register_ok "register the deletion user" "$email_d" "$pass_d"
    login "$email_d" "$pass_d"
    t1=$TOKEN
    login "$email_d" "$pass_d"
    t2=$TOKEN

    auth_json DELETE /auth/me "$t1" "$(obj password "$pass_d-wrong")"
    check_problem 401 wrong_password "DELETE /auth/me with a wrong password is 401 wrong_password"
    auth_json DELETE /auth/me "$t1" '{}'
    check_problem 400 missing_field "DELETE /auth/me without password is 400 missing_field"
    printf '%s' "$(obj password "$pass_d")" >"$TMP/request"
    req DELETE /auth/me -H 'Content-Type: application/json' --data-binary @"$TMP/request"
    check_unauthorized missing_token "DELETE /auth/me without a token is 401 missing_token"
    auth GET /auth/me "$t1"
    check_status 200 "failed deletions leave the account alone"

    auth_json DELETE /auth/me "$t1" "$(obj password "$pass_d")"
    check_status 204 "DELETE /auth/me is 204"
    check_eq "DELETE /auth/me 204 has an empty body" "" "$BODY"
    auth GET /auth/me "$t1"
    check_unauthorized token_revoked "after DELETE /auth/me its token is 401 token_revoked"
    auth GET /auth/me "$t2"
    check_unauthorized token_revoked "after DELETE /auth/me the user's other token is 401 token_revoked"
    auth_json DELETE /auth/me "$t1" "$(obj password "$pass_d")"
    check_unauthorized token_revoked "DELETE /auth/me again is 401 token_revoked"
    login "$email_d" "$pass_d"
    check_problem 404 unknown_email "login to the deleted account is 404 unknown_email"
    register_ok "the deleted account's email can be registered again" "$email_d" "$pass_d"
}

# section_reset: the reset link's token, read from the mail: weak password,
# success, revocation, reuse, cooldown.
section_reset() {
    local email_r pass_r new_r t1 t2 first
    email_r=$(email reset)
    pass_r="Reg-pass-$RUN_ID-r"
    new_r="Reg-new-pass-$RUN_ID-r"
    register_ok "register the reset user" "$email_r" "$pass_r"
    login "$email_r" "$pass_r"
    t1=$TOKEN
    login "$email_r" "$pass_r"
    t2=$TOKEN

    post_json /auth/password/forgot "$(obj email "${email_r^^}")"
    check_status 202 "forgot for the reset user (email in upper case) is 202"
    mail_token_for reset "the newest mail to the reset user has a reset link with a 43-character token" "$email_r" || return
    first=$MAIL_TOKEN

    post_json /auth/password/reset "$(obj token "$first" new_password "password")"
    check_problem 422 weak_password "reset with the mailed token to 'password' is 422 weak_password"
    post_json /auth/password/reset "$(obj token "$first" new_password "$email_r")"
    check_problem 422 weak_password "reset with the mailed token to the email is 422 weak_password"
    auth GET /auth/me "$t1"
    check_status 200 "a rejected reset leaves the sessions alone"

    post_json /auth/password/reset "$(obj token "$first" new_password "$new_r")"
    check_status 204 "reset with the mailed token is 204"
    check_eq "reset 204 has an empty body" "" "$BODY"
    auth GET /auth/me "$t1"
    check_unauthorized token_revoked "after a reset the user's first token is 401 token_revoked"
    auth GET /auth/me "$t2"
    check_unauthorized token_revoked "after a reset the user's second token is 401 token_revoked"
    login "$email_r" "$pass_r"
    check_problem 401 wrong_password "after a reset the old password is 401 wrong_password"
    login "$email_r" "$new_r"
    check_status 200 "after a reset the new password logs in"
    post_json /auth/password/reset "$(obj token "$first" new_password "$new_r-again")"
    check_problem 400 invalid_reset_token "the used reset token again is 400 invalid_reset_token"

    # Within MAIL_RECIPIENT_COOLDOWN_SECONDS (60 s by default) of that mail,
    # another forgot answers alike and queues nothing.
    post_json /auth/password/forgot "$(obj email "$email_r")"
    check_status 202 "a forgot within the cooldown is 202 like any other"
    sleep 1
    MAIL_TOKEN=""
    newest_mail_token reset "$email_r"
    check_eq "a forgot within MAIL_RECIPIENT_COOLDOWN_SECONDS queues no mail: the newest is still the first" \
        "$first" "$MAIL_TOKEN"
}

# section_reset_page: the page a reset mail links to, with the mailed token:
# opening it twice changes nothing, the two fields must agree, a weak
# password is refused in words, the form resets the password, and the used
# link says so. Its own user, so the reset user's cooldown is not in the way.
section_reset_page() {
    local email_p pass_p new_p token
    email_p=$(email page)
    pass_p="Reg-pass-$RUN_ID-p"
    new_p="Reg-new-pass-$RUN_ID-p"
    register_ok "register the reset page user" "$email_p" "$pass_p"
    post_json /auth/password/forgot "$(obj email "$email_p")"
    check_status 202 "forgot for the reset page user is 202"
    mail_token_for reset "the newest mail to the reset page user has a reset link" "$email_p" || return
    token=$MAIL_TOKEN

    req GET "/reset-password?token=$token"
    check_page 200 "GET /reset-password with the mailed token is a 200 HTML page with the security headers"
    check_body_has "the page has a form posting next to itself" '<form method="post" action="reset-password"'
    check_body_has "the page asks for the new password with autocomplete=new-password" 'autocomplete="new-password"'
    if [[ $BODY == *"name=\"token\" value=\"$token\""* ]]; then
        pass "the page carries the token in a hidden field"
    else
        fail "the page carries the token in a hidden field" "the mailed token in the form" "another page"
    fi
    req GET "/reset-password?token=$token"
    check_page 200 "opening the page again still shows the form: a GET does not use the token up"

    post_form /reset-password token "$token" new_password "$new_p" confirm_password "$new_p-typo"
    check_page 422 "the form with two different passwords is a 422 HTML page"
    check_body_has "the page says the two passwords differ" "The two passwords are not the same."
    post_form /reset-password token "$token" new_password "password" confirm_password "password"
    check_page 422 "the form with the password 'password' is a 422 HTML page"
    check_body_has "the page gives the rule's words" "This password is too common"
    login "$email_p" "$pass_p"
    check_status 200 "a rejected form leaves the old password working"

    post_form /reset-password token "$token" new_password "$new_p" confirm_password "$new_p"
    check_page 200 "the form with the mailed token and a good password is a 200 HTML page"
    check_body_has "the page says the password is changed" "Your password is changed"
    login "$email_p" "$pass_p"
    check_problem 401 wrong_password "after the form the old password is 401 wrong_password"
    login "$email_p" "$new_p"
    check_status 200 "after the form the new password logs in over the API"
    post_form /reset-password token "$token" new_password "$new_p-again" confirm_password "$new_p-again"
    check_page 400 "the form with the used token is a 400 HTML page"
    check_body_has "the page says the used link no longer works" "This link no longer works"
    req GET "/reset-password?token=$token"
    check_page 400 "the page of the used link is a 400 HTML page"
}

# section_email_links: the verification and confirmation endpoints and
# pages with tokens no mail carried: every refusal, and that opening a page
# shows a button without acting.
section_email_links() {
    local bogus resend_body
    bogus=$(printf 'A%.0s' $(seq 1 43))
    post_json /auth/email/verify "$(obj token "$bogus")"
    check_problem 400 invalid_verification_token "POST /auth/email/verify with an unknown token is 400 invalid_verification_token"
    post_json /auth/email/verify '{}'
    check_problem 400 missing_field "POST /auth/email/verify without token is 400 missing_field"
    post_json /auth/email/confirm "$(obj token "$bogus")"
    check_problem 400 invalid_confirmation_token "POST /auth/email/confirm with an unknown token is 400 invalid_confirmation_token"
    post_json /auth/email/confirm '{"token":7}'
    check_problem 400 invalid_field "POST /auth/email/confirm with a number as token is 400 invalid_field"
    req GET /auth/email/verify
    check_problem 405 method_not_allowed "GET /auth/email/verify is 405 method_not_allowed"
    check_header "GET /auth/email/verify lists Allow: POST" Allow POST

    # Like forgot, resend must not tell whether an account exists.
    post_json /auth/email/verify/resend "$(obj email "$EMAIL_A")"
    check_status 202 "resend verification for a registered email is 202"
    resend_body=$BODY
    post_json /auth/email/verify/resend "$(obj email "$(email nobody)")"
    check_status 202 "resend verification for an unregistered email is 202"
    check_eq "resend answers an unregistered email with the identical body" "$resend_body" "$BODY"
    post_json /auth/email/verify/resend "$(obj email "not-an-email")"
    check_status 202 "resend verification for an invalid email is 202 too"

    req GET /verify-email
    check_page 400 "GET /verify-email without a token is a 400 HTML page"
    check_body_has "the page says the link is incomplete" "This link is incomplete"
    req GET "/verify-email?token=$bogus"
    check_page 200 "GET /verify-email with a token is a 200 HTML page with the security headers"
    check_body_has "the page has a button posting next to itself" '<form method="post" action="verify-email"'
    post_form /verify-email token "$bogus"
    check_page 400 "the verify button with an unknown token is a 400 HTML page"
    check_body_has "the page says the link no longer works" "This link is used, expired or replaced"
    req GET "/confirm-email?token=$bogus"
    check_page 200 "GET /confirm-email with a token is a 200 HTML page"
    check_body_has "the confirm page has a button posting next to itself" '<form method="post" action="confirm-email"'
    post_form /confirm-email token "$bogus"
    check_page 400 "the confirm button with an unknown token is a 400 HTML page"
}

# section_verify: the link mailed at registration, by the page's button and
# by the API; a used link, and a resend to a verified address.
section_verify() {
    local email_v pass_v email_w token
    email_v=$(email verify)
    pass_v="Reg-pass-$RUN_ID-v"
    register_ok "register the verification user" "$email_v" "$pass_v"
    check_json "a new account's email is not verified" 'd["user"]["email_verified"]' false
    mail_token_for verify "registration mails a verification link" "$email_v" || return
    token=$MAIL_TOKEN

    req GET "/verify-email?token=$token"
    check_page 200 "GET /verify-email with the mailed token is a 200 HTML page"
    login "$email_v" "$pass_v"
    check_json "opening the page verifies nothing" 'd["user"]["email_verified"]' false
    post_form /verify-email token "$token"
    check_page 200 "the verify button with the mailed token is a 200 HTML page"
    check_body_has "the page says the address is confirmed" "is confirmed"
    login "$email_v" "$pass_v"
    check_json "after the button the account's email is verified" 'd["user"]["email_verified"]' true
    post_json /auth/email/verify "$(obj token "$token")"
    check_problem 400 invalid_verification_token "the used verification token again is 400 invalid_verification_token"
    post_json /auth/email/verify/resend "$(obj email "$email_v")"
    check_status 202 "resend for a verified address is 202"
    sleep 1
    newest_mail_token verify "$email_v"
    check_eq "resend for a verified address mails nothing: the newest link is still the first" \
        "$token" "$MAIL_TOKEN"

    email_w=$(email verify2)
    register_ok "register the second verification user" "$email_w" "$pass_v"
    mail_token_for verify "the second user gets a verification link" "$email_w" || return
    post_json /auth/email/verify "$(obj token "$MAIL_TOKEN")"
    check_status 200 "POST /auth/email/verify with the mailed token is 200"
    check_json "it answers the user, verified" '[d["user"]["email"], d["user"]["email_verified"]]' "[\"$email_w\", true]"
}

section_email_links
if [[ -n $MAIL ]]; then
    section_verify
fi

if [[ $SHORT_TTL == 1 ]]; then
    skip "GET /auth/me checks (EXPECT_SHORT_TTL=1: tokens expire within 2 s)"
    skip "sessions checks (EXPECT_SHORT_TTL=1: tokens expire within 2 s)"
    skip "logout and logout-all checks (EXPECT_SHORT_TTL=1: tokens expire within 2 s)"
    skip "refresh token checks (EXPECT_SHORT_TTL=1: tokens expire within 2 s)"
    skip "password change checks (EXPECT_SHORT_TTL=1: tokens expire within 2 s)"
    skip "PATCH /auth/me checks (EXPECT_SHORT_TTL=1: tokens expire within 2 s)"
    skip "DELETE /auth/me checks (EXPECT_SHORT_TTL=1: tokens expire within 2 s)"
    if [[ -n $MAIL ]]; then
        skip "password reset with a mailed token, by the API and by the page (EXPECT_SHORT_TTL=1: tokens expire within 2 s)"
    fi
else
    section_me
    section_sessions
    section_logout
    section_refresh
    section_password
    section_update_me
    section_delete_me
    if [[ -n $MAIL ]]; then
        section_reset
        section_reset_page
    fi
fi
if [[ -z $MAIL ]]; then
    skip "the mailed links (password reset: success, revoked sessions, reuse, cooldown, lifting a lockout, the reset page's form; verifying an address; confirming a new one): set MAIL_COMMAND or MAILPIT_URL to read the mail, e.g. MAIL_COMMAND='mysql -h127.0.0.1 -uroot auth -N -e \"SELECT body FROM mail_outbox WHERE recipient=\\\"\$1\\\" ORDER BY id DESC LIMIT 10\"' (see the header of regression.sh)"
fi

# ---------------------------------------------------------------------------
# Lockout: an account of its own, since it stays locked for the window
# ---------------------------------------------------------------------------

section_lockout() {
    local email_k pass_k new_k t="" i
    email_k=$(email lockout)
    pass_k="Reg-pass-$RUN_ID-k"
    new_k="Reg-new-pass-$RUN_ID-k"
    register_ok "register the lockout user" "$email_k" "$pass_k"
    login "$email_k" "$pass_k"
    t=$TOKEN

    for i in 1 2 3 4 5; do
        login "$email_k" "$pass_k-wrong-$i"
        check_problem 401 wrong_password "wrong password $i of 5 for the lockout user is 401 wrong_password"
    done
    login "$email_k" "$pass_k"
    check_problem 429 too_many_attempts "after 5 wrong passwords the right one is 429 too_many_attempts"
    check_retry_after "the lockout 429 carries Retry-After in seconds"
    post_json /auth/password "$(obj email "$email_k" current_password "$pass_k" new_password "$new_k")"
    check_problem 429 too_many_attempts "password change for the locked account is 429 too_many_attempts"
    check_retry_after "the password change 429 carries Retry-After in seconds"
    if [[ $SHORT_TTL != 1 ]]; then
        auth_json PATCH /auth/me "$t" "$(obj email "$(email lockout2)" current_password "$pass_k")"
        check_problem 429 too_many_attempts "PATCH /auth/me for the locked account is 429 too_many_attempts"
    fi
    if [[ -n $MAIL ]]; then
        post_json /auth/password/forgot "$(obj email "$email_k")"
        check_status 202 "forgot for the locked account is 202"
        mail_token_for reset "the locked account's mail has a reset token" "$email_k" || return
        post_json /auth/password/reset "$(obj token "$MAIL_TOKEN" new_password "$new_k")"
        check_status 204 "reset of the locked account is 204"
        login "$email_k" "$new_k"
        check_status 200 "a reset lifts the lockout: login with the new password is 200"
    fi
}

section_lockout

# ---------------------------------------------------------------------------
# The admin API: the first admin walks one account through its life
# ---------------------------------------------------------------------------

# admin METHOD PATH TOKEN [JSON]: a request to the admin API (ADMIN_URL).
admin() {
    local method=$1 path=$2 token=$3 base=$BASE_URL
    BASE_URL=$ADMIN_URL
    if [[ -z $token ]]; then
        req "$method" "$path"
    elif [[ $# -ge 4 ]]; then
        auth_json "$method" "$path" "$token" "$4"
    else
        auth "$method" "$path" "$token"
    fi
    BASE_URL=$base
}

section_admin() {
    local email_a pass_a t_admin t_user id admins email_c pass_c id_c email_i id_i
    email_a=$(email admin-subject)
    pass_a="Reg-pass-$RUN_ID-a"
    login "$ADMIN_EMAIL" "$ADMIN_PASSWORD"
    check_status 200 "the first admin (ADMIN_EMAIL) logs in"
    t_admin=$TOKEN
    [[ -n $t_admin ]] || return
    auth GET /auth/me "$t_admin"
    check_json "the admin's user object says role admin" 'd["user"]["role"]' admin
    register_ok "register the admin walk-through user" "$email_a" "$pass_a"
    login "$email_a" "$pass_a"
    t_user=$TOKEN
    auth GET /auth/me "$t_user"
    check_json "a registered user's role is user" 'd["user"]["role"]' user

    admin GET "/admin/users?query=$(py 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$email_a")" "$t_admin"
    check_json "GET /admin/users?query= finds the user by part of its email" '[u["email"] for u in d["users"]]' "[\"$email_a\"]"
    id=$(json_get 'd["users"][0]["id"]')
    admin GET "/admin/users?limit=1" "$t_admin"
    check_json "GET /admin/users?limit=1 is one account with a next cursor" 'len(d["users"]) == 1 and isinstance(d["next"], str)' true
    admin GET "/admin/users/$id" "$t_admin"
    check_json "GET /admin/users/{id} shows its state" '[d["user"]["email"], d["user"]["disabled"], d["user"]["live_sessions"]]' "[\"$email_a\", false, 1]"

    admin GET /admin/users "$t_user"
    check_problem 403 forbidden "GET /admin/users with a non-admin's token is 403 forbidden"
    admin GET /admin/users ""
    check_problem 401 missing_token "GET /admin/users without a token is 401"
    admin GET "/admin/users?limit=0" "$t_admin"
    check_problem 400 invalid_query "GET /admin/users?limit=0 is 400 invalid_query"
    admin GET "/admin/users?color=red" "$t_admin"
    check_problem 400 invalid_query "an unknown query parameter is 400 invalid_query"
    admin GET /admin/users/999999999999 "$t_admin"
    check_problem 404 user_not_found "an unknown id is 404 user_not_found"
    admin PATCH "/admin/users/$id" "$t_admin" '{"role": "root"}'
    check_problem 400 invalid_field "PATCH with a role that does not exist is 400 invalid_field"

    admin PATCH "/admin/users/$id" "$t_admin" '{"disabled": true, "disabled_reason": "regression walk-through"}'
    check_json "PATCH disabled:true disables it, with its reason" '[d["user"]["disabled"], d["user"]["disabled_reason"], d["user"]["live_sessions"]]' '[true, "regression walk-through", 0]'
    auth GET /auth/me "$t_user"
    check_unauthorized token_revoked "the disabled user's token is 401 token_revoked at once"
    login "$email_a" "$pass_a"
    check_problem 403 account_disabled "the disabled user's right password is 403 account_disabled"
    login "$email_a" "$pass_a-wrong"
    check_problem 401 wrong_password "the disabled user's wrong password is still 401 wrong_password"
    admin PATCH "/admin/users/$id" "$t_admin" '{"disabled": false}'
    check_json "PATCH disabled:false enables it and clears the reason" '[d["user"]["disabled"], d["user"]["disabled_reason"]]' '[false, null]'
    auth GET /auth/me "$t_user"
    check_unauthorized token_revoked "enabling brings no old session back"
    login "$email_a" "$pass_a"
    check_status 200 "the enabled user logs in again"
    t_user=$TOKEN

    admin DELETE "/admin/users/$id/lockout" "$t_admin"
    check_status 204 "DELETE /admin/users/{id}/lockout is 204"
    admin POST "/admin/users/$id/password-reset" "$t_admin" '{}'
    check_status 202 "POST /admin/users/{id}/password-reset is 202"
    admin DELETE "/admin/users/$id/sessions" "$t_admin"
    check_status 204 "DELETE /admin/users/{id}/sessions is 204"
    auth GET /auth/me "$t_user"
    check_unauthorized token_revoked "after the admin ended its sessions the user's token is 401 token_revoked"

    admin GET "/admin/audit?user_id=$id&type=account_disabled" "$t_admin"
    check_json "GET /admin/audit has the disabling, by the admin, with its reason" \
        '[len(d["events"]), d["events"][0]["detail"]["reason"], d["events"][0]["actor_id"] is not None]' \
        '[1, "regression walk-through", true]'
    admin GET "/admin/audit?type=bogus" "$t_admin"
    check_problem 400 invalid_query "GET /admin/audit?type=bogus is 400 invalid_query"
    login "$email_a" "$pass_a"
    auth GET "/auth/me/events?limit=50" "$TOKEN"
    check_json "GET /auth/me/events is the user's own history: the disabling by an admin, refused and good logins" \
        '[all(e["user_id"] == d["events"][0]["user_id"] for e in d["events"]), [e["by_admin"] for e in d["events"] if e["type"] == "account_disabled"], "login_failed" in [e["type"] for e in d["events"]], d["events"][0]["type"]]' \
        '[true, [true], true, "login_succeeded"]'

    admin GET "/admin/users?role=admin&disabled=false&limit=2" "$t_admin"
    admins=$(json_get 'len(d["users"])')
    if [[ $admins == 1 ]]; then
        admin PATCH "/admin/users/$(json_get 'd["users"][0]["id"]')" "$t_admin" '{"role": "user"}'
        check_problem 409 last_admin "demoting the only enabled admin is 409 last_admin"
    else
        skip "409 last_admin (the server has ${admins:-?} enabled admins; covered by cargo test --test admin: the_last_admin_cannot_be_demoted_disabled_or_deleted)"
    fi

    # Accounts an admin creates: with a password, and by invitation.
    email_c=$(email admin-created)
    pass_c="Reg-pass-$RUN_ID-c"
    admin POST /admin/users "$t_admin" "$(obj email "$email_c" password "$pass_c" name Created)"
    check_json "POST /admin/users with a password creates the account" \
        '[d["user"]["email"], d["user"]["role"], d["user"]["name"], d["user"]["email_verified"]]' \
        "[\"$email_c\", \"user\", \"Created\", false]"
    id_c=$(json_get 'd["user"]["id"]')
    login "$email_c" "$pass_c"
    check_status 200 "the created account logs in with the admin's password"
    admin POST /admin/users "$TOKEN" "$(obj email "$(email admin-refused)")"
    check_problem 403 forbidden "POST /admin/users with a user's token is 403 forbidden"
    admin POST /admin/users "$t_admin" "$(obj email "${email_c^^}")"
    check_problem 409 email_taken "POST /admin/users for a taken address is 409 email_taken"
    email_i=$(email admin-invited)
    admin POST /admin/users "$t_admin" "$(obj email "$email_i")"
    check_json "POST /admin/users without a password creates an unverified account" \
        '[d["user"]["email"], d["user"]["email_verified"]]' "[\"$email_i\", false]"
    id_i=$(json_get 'd["user"]["id"]')
    login "$email_i" "$pass_c"
    check_problem 401 wrong_password "before its invitation is used, no password opens the account"
    if [[ $MAIL == yes ]]; then
        mail_token_for reset "the invited address gets a set-password link" "$email_i" && {
            post_json /auth/password/reset "$(obj token "$MAIL_TOKEN" new_password "$pass_c-i")"
            check_status 204 "the invitation's link sets the first password"
            login "$email_i" "$pass_c-i"
            check_status 200 "the invited user logs in with the password they chose"
            auth GET /auth/me "$TOKEN"
            check_json "using the invitation verified the address" 'd["user"]["email_verified"]' true
        }
    else
        skip "using an invitation (set MAIL_COMMAND or MAILPIT_URL; covered by cargo test --test invitations)"
    fi
    admin GET "/admin/audit?user_id=$id_i&type=user_created_by_admin" "$t_admin"
    check_json "the invitation is a user_created_by_admin event, by the admin" \
        '[len(d["events"]), d["events"][0]["detail"]["invited"], d["events"][0]["actor_id"] is not None]' \
        '[1, true, true]'

    # An address an admin changes moves at once.
    email_c=$(email admin-moved)
    admin PATCH "/admin/users/$id_c" "$t_admin" "$(obj email "$email_c")"
    check_json "PATCH email moves the account at once, unverified" \
        '[d["user"]["email"], d["user"]["email_verified"]]' "[\"$email_c\", false]"
    login "$email_c" "$pass_c"
    check_status 200 "the moved account logs in at its new address"
    admin PATCH "/admin/users/$id_c" "$t_admin" "$(obj email "$email_a" role admin)"
    check_problem 409 email_taken "PATCH to another account's address is 409 email_taken"
    admin GET "/admin/users/$id_c" "$t_admin"
    check_json "the refused PATCH applied nothing" '[d["user"]["email"], d["user"]["role"]]' "[\"$email_c\", \"user\"]"
    admin GET "/admin/audit?user_id=$id_c&type=email_changed" "$t_admin"
    check_json "the move is an email_changed event, by the admin" \
        '[len(d["events"]), d["events"][0]["detail"]["new_email"], d["events"][0]["actor_id"] is not None]' \
        "[1, \"$email_c\", true]"
    for id_c in "$id_c" "$id_i"; do
        admin DELETE "/admin/users/$id_c" "$t_admin"
        check_status 204 "DELETE /admin/users/{id} of an account the admin created is 204"
    done

    admin DELETE "/admin/users/$id" "$t_admin"
    check_status 204 "DELETE /admin/users/{id} is 204"
    admin GET "/admin/users/$id" "$t_admin"
    check_problem 404 user_not_found "the deleted account is 404 user_not_found"
}

# ---------------------------------------------------------------------------
# Two-factor login: enrolment, the two-step login, replay, recovery codes
# ---------------------------------------------------------------------------

# totp SECRET OFFSET: the 6-digit RFC 6238 code (SHA-1, 30 s) of the step
# OFFSET steps from now, computed with Python's standard library; the
# secret goes in on standard input, not on a command line.
totp() {
    "$PYTHON" -c 'import base64, hmac, struct, sys, time
secret = sys.stdin.read().strip()
key = base64.b32decode(secret + "=" * (-len(secret) % 8))
step = int(time.time()) // 30 + int(sys.argv[1])
mac = hmac.new(key, struct.pack(">Q", step), "sha1").digest()
o = mac[19] & 15
print("%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7fffffff) % 1000000))' "$2" <<<"$1"
}

section_mfa() {
    local email_m pass_m t_m secret code0 code1 mfa_token rc0 rc1
    email_m=$(email mfa)
    pass_m="Reg-pass-$RUN_ID-m"
    register_ok "register the two-factor user" "$email_m" "$pass_m"
    login "$email_m" "$pass_m"
    t_m=$TOKEN
    auth_json POST /auth/mfa/totp/setup "$t_m" "$(obj password "$pass_m-wrong")"
    if [[ $STATUS == 503 ]]; then
        check_problem 503 mfa_unavailable "without DATA_ENCRYPTION_KEY, enrolment is 503 mfa_unavailable"
        skip "two-factor login (the server has no DATA_ENCRYPTION_KEY; covered by cargo test --test mfa)"
        return
    fi
    check_problem 401 wrong_password "TOTP setup with a wrong password is 401 wrong_password"
    auth_json POST /auth/mfa/totp/setup "$t_m" "$(obj password "$pass_m")"
    check_json "TOTP setup answers a base32 secret, its otpauth URI and an SVG QR code" \
        '[bool(re.fullmatch("[A-Z2-7]{32}", d["secret"])), d["otpauth_uri"].startswith("otpauth://totp/") and "&algorithm=SHA1&digits=6&period=30" in d["otpauth_uri"], d["qr_svg"].startswith("<svg")]' \
        '[true, true, true]'
    secret=$(json_get 'd["secret"]')
    # Not within 3 s of a step's end, so the codes below keep their steps.
    sleep "$("$PYTHON" -c 'import time; r = 30 - time.time() % 30; print(r + 0.1 if r < 3 else 0)')"
    code0=$(totp "$secret" 0)
    code1=$(totp "$secret" 1)
    auth_json POST /auth/mfa/totp/confirm "$t_m" "$(obj code "$(totp "$secret" 5)")"
    check_problem 401 invalid_mfa_code "confirming with a code five steps away is 401 invalid_mfa_code"
    auth_json POST /auth/mfa/totp/confirm "$t_m" "$(obj code "$code0")"
    check_json "confirming with the current code answers 10 recovery codes" \
        '[len(d["recovery_codes"]), all(re.fullmatch("[0-9a-z]{5}-[0-9a-z]{5}", c) for c in d["recovery_codes"])]' '[10, true]'
    rc0=$(json_get 'd["recovery_codes"][0]')
    rc1=$(json_get 'd["recovery_codes"][1]')
    auth GET /auth/me "$t_m"
    check_json "GET /auth/me says mfa_enabled, and that this session passed no second factor" \
        '[d["user"]["mfa_enabled"], d["mfa"]]' '[true, false]'

    post_json /auth/login "$(obj email "$email_m" password "$pass_m")"
    check_json "the right password now answers mfa_required with an mfa_token and no session" \
        '[d["mfa_required"], "token" in d, d["methods"], d["mfa_expires_in"] > 0]' \
        '[true, false, ["totp", "recovery_code"], true]'
    mfa_token=$(json_get 'd["mfa_token"]')
    auth GET /auth/me "$mfa_token"
    check_unauthorized invalid_token "the mfa_token is no Bearer token"
    post_json /auth/login/mfa "$(obj mfa_token "$mfa_token" code "$code0")"
    check_problem 401 invalid_mfa_code "the code the confirmation used is refused on replay"
    post_json /auth/login/mfa "$(obj mfa_token "$mfa_token" code "$code1")"
    check_json "the next step's code completes the login" '[d["token_type"], d["user"]["mfa_enabled"]]' '["Bearer", true]'
    auth GET /auth/me "$(json_get 'd["token"]')"
    check_json "the session records that it passed a second factor" 'd["mfa"]' true
    post_json /auth/login/mfa "$(obj mfa_token "$mfa_token" code "$code1")"
    check_problem 401 invalid_mfa_token "an mfa_token works once"

    post_json /auth/login "$(obj email "$email_m" password "$pass_m")"
    mfa_token=$(json_get 'd["mfa_token"]')
    post_json /auth/login/mfa "$(obj mfa_token "$mfa_token" recovery_code "$rc0")"
    check_status 200 "a recovery code completes a login"
    post_json /auth/login "$(obj email "$email_m" password "$pass_m")"
    mfa_token=$(json_get 'd["mfa_token"]')
    post_json /auth/login/mfa "$(obj mfa_token "$mfa_token" recovery_code "$rc0")"
    check_problem 401 invalid_mfa_code "a recovery code works once"

    post_json /auth/password "$(obj email "$email_m" current_password "$pass_m" new_password "$pass_m-new")"
    check_problem 401 mfa_required "a password change without a session needs the code too"
    auth_json DELETE /auth/mfa/totp "$t_m" "$(obj password "$pass_m" code "$rc1")"
    check_status 204 "DELETE /auth/mfa/totp with the password and a recovery code turns it off"
    login "$email_m" "$pass_m"
    check_json "with it off, the password alone logs in again" '[d["token_type"], d["user"]["mfa_enabled"]]' '["Bearer", false]'
}

section_mfa

if [[ -n $ADMIN_EMAIL && -n $ADMIN_PASSWORD ]]; then
    section_admin
else
    skip "the admin API (set ADMIN_EMAIL and ADMIN_PASSWORD to the server's first admin; covered by cargo test --test admin)"
fi

# ---------------------------------------------------------------------------
# Token expiry
# ---------------------------------------------------------------------------

if [[ $SHORT_TTL == 1 ]]; then
    email_x=$(email expiry)
    pass_x="Reg-pass-$RUN_ID-x"
    register_ok "register the expiry user" "$email_x" "$pass_x"
    login "$email_x" "$pass_x"
    ttl=$(json_get 'd["expires_in"]')
    if [[ $ttl =~ ^[0-9]+$ ]] && ((ttl <= 2)); then
        pass "login expires_in is at most 2 s (server has a short TTL)"
        auth GET /auth/me "$TOKEN"
        check_status 200 "a fresh short-lived token works"
        sleep $((ttl + 1))
        auth GET /auth/me "$TOKEN"
        check_unauthorized token_expired "after its TTL the token is 401 token_expired"
        auth GET /auth/sessions "$TOKEN"
        check_unauthorized token_expired "GET /auth/sessions with an expired token is 401 token_expired"
        auth POST /auth/logout "$TOKEN"
        check_unauthorized token_expired "logout with an expired token is 401 token_expired"
    else
        fail "login expires_in is at most 2 s (EXPECT_SHORT_TTL=1 needs TOKEN_TTL_SECONDS<=2)" "<= 2" "'$ttl' ($(got))"
    fi
else
    skip "token_expired (needs TOKEN_TTL_SECONDS<=2 and EXPECT_SHORT_TTL=1; covered by cargo test)"
fi

# ---------------------------------------------------------------------------
# Rate limit: last, since it empties this client's bucket
# ---------------------------------------------------------------------------

flood "$FLOOD_MAX"
if [[ $STATUS == 404 && $NO_RATE_LIMIT == 1 ]]; then
    skip "rate limiting: $FLOOD_COUNT logins met no 429 (EXPECT_NO_RATE_LIMIT=1: the server runs with RATE_LIMIT_BURST=0)"
elif [[ $STATUS == 404 ]]; then
    fail "a flood of unknown-email logins meets 429 rate_limited" "429 within $FLOOD_MAX requests" \
        "$FLOOD_COUNT answers of 404 (does the server run with RATE_LIMIT_BURST=0, the limiter off? then set EXPECT_NO_RATE_LIMIT=1)"
else
    if [[ $NO_RATE_LIMIT == 1 && $STATUS == 429 ]]; then
        fail "no rate limiting (EXPECT_NO_RATE_LIMIT=1)" "$FLOOD_COUNT logins without a 429" "$(got)"
    fi
    check_problem 429 rate_limited "login $FLOOD_COUNT of a flood of unknown-email logins is 429 rate_limited"
    check_retry_after "the rate_limited 429 carries Retry-After in seconds"
    if [[ $STATUS == 429 ]] && ((RECOVERY_SECONDS > 0)); then
        echo "regression.sh: sleeping ${RECOVERY_SECONDS} s so this client's rate-limit bucket refills for the next run (RATE_LIMIT_RECOVERY_SECONDS)"
        sleep "$RECOVERY_SECONDS"
        login "$(email flood)" "Reg-flood-password"
        check_problem 404 unknown_email "after the sleep a login is no longer rate-limited (404 unknown_email)"
    elif [[ $STATUS == 429 ]]; then
        echo "regression.sh: not sleeping (RATE_LIMIT_RECOVERY_SECONDS=0): this client stays rate-limited until its bucket refills"
    fi
fi

echo "$PASSED passed, $FAILED failed"
((FAILED == 0)) || exit 1
exit 0
