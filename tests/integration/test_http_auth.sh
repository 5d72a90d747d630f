#!/usr/bin/env bash
# test_http_auth.sh - who may do what over HTTP, on a real pmeshd with both
# listeners, driven with curl:
#
# - every route with no credential, this promise's settle token, another
#   promise's, an expired one, a read key, a write key and a wrong key, on
#   the full listener; the public listener serves only a promise's own
#   routes, with its token, and refuses every client route;
# - a token holder of one promise never sees another's value (get, list);
# - 401 / 403 carry WWW-Authenticate; refusals are counted by reason and
#   logged with stable tags;
# - API keys rotate on SIGHUP (and when the file changes) without a
#   restart; a bad file on reload keeps the keys in force;
# - the config refusals: a non-loopback --http without keys, a bad keys file.
#
#   BUILD=build tests/integration/test_http_auth.sh
. "$(dirname "$0")/lib.sh"

command -v curl >/dev/null || { echo "test_http_auth.sh: curl is needed" >&2; exit 1; }

take_port; HF=$PORT
take_port; HP=$PORT
take_port; HX=$PORT
F=http://127.0.0.1:$HF # the full API
P=http://127.0.0.1:$HP # the public listener

# req METHOD URL [AUTH] [BODY]: sets CODE, BODY, HDRS.
# check_fn NAME FN [ARGS...]: like check, for a shell function (wait_for, alive).
check_fn() {
    local name=$1
    shift
    if "$@"; then ok "$name"; else not_ok "$name" "command: $*"; fi
}

req() {
    local m=$1 url=$2 auth=${3:-} data=${4:-}
    local args=(-s -o "$TMP/body" -D "$TMP/hdrs" -w '%{http_code}' -X "$m")
    [ -n "$auth" ] && args+=(-H "Authorization: Bearer $auth")
    [ "$m" = POST ] && args+=(--data-binary "$data")
    CODE=$(timeout -k 2 "$CMD_TIMEOUT" curl "${args[@]}" "$url") || CODE=${CODE:-000}
    BODY=$(cat "$TMP/body" 2>/dev/null || true)
    HDRS=$(tr -d '\r' <"$TMP/hdrs" 2>/dev/null || true)
}

head -c 48 /dev/urandom | base64 | tr -d '\n' >"$TMP/secret"
KR=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
KW=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
KW2=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
WRONG=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
cat >"$TMP/keys" <<KEYS
# pmesh API keys: NAME SCOPE KEY
dashboards read  $KR
functions  write $KW   # the functions' key
KEYS

start_agent 1 --http "127.0.0.1:$HF" --http-public "127.0.0.1:$HP" \
    --token-secret-file "$TMP/secret" --http-api-keys-file "$TMP/keys"
APID=$AGENT_PID
SOCK=$AGENT_SOCK
wait_for 10 curl -sf "$P/healthz" || { echo "no gateway" >&2; finish; }

# Two promises made by a write client; A resolved with a secret value.
req POST "$F/v1/promises" "$KW" '{"timeout":"5m"}'
expect_eq "write key: create 201" 201 "$CODE"
A=$(json_get "$BODY" id)
TA=$(json_get "$BODY" settle_token)
expect_eq "callback_url points at the public listener" "$P/v1/promises/$A/resolve" \
    "$(json_get "$BODY" callback_url)"
req POST "$F/v1/promises" "$KW" '{"timeout":"5m"}'
B=$(json_get "$BODY" id)
TB=$(json_get "$BODY" settle_token)
req POST "$F/v1/promises" "$KW" '{"timeout":"5m","token_ttl":"1s"}'
E=$(json_get "$BODY" id)
TE=$(json_get "$BODY" settle_token)
expect_match "token_ttl: the token carries its expiry" '^[0-9]+\.[A-Za-z0-9_-]{43}$' "$TE"
req GET "$P/v1/promises/$E" "$TE"
expect_eq "a token with a lifetime works before it ends" 200 "$CODE"
req POST "$F/v1/promises/$A/resolve" "$TA" '{"value":"the secret of A"}'
expect_eq "A resolved with its token on the full listener" 200 "$CODE"

# The expired token: wait (observable state) until the gateway says so.
expired() { req GET "$P/v1/promises/$E" "$TE"; [ "$CODE" = 403 ]; }
check_fn "the token is refused once its lifetime is over" wait_for 5 expired
expect_eq "... TOKEN_EXPIRED" TOKEN_EXPIRED "$(json_get "$BODY" error)"
expect_match "... says it expired" "expired" "$(json_get "$BODY" message)"
expect_match "... with WWW-Authenticate invalid_token" 'WWW-Authenticate: Bearer.*invalid_token' "$HDRS"

# ---- the matrix on the full listener ----------------------------------------------------
# route: METHOD PATH BODY WRITES TOKENABLE (on promise B, still pending)
ROUTES=(
    "POST|/v1/promises|{}|1|0"
    "GET|/v1/promises||0|0"
    "GET|/v1/promises/$B||0|1"
    "POST|/v1/promises/$B/heartbeat|{}|1|1"
    "POST|/v1/promises/$B/reject|{\"reason\":\"r\"}|1|1"
    "POST|/v1/promises/$B/cancel|{}|1|1"
    "POST|/v1/promises/$B/resolve|{\"value\":\"v\"}|1|1"
)
# Refusals only first (nothing may change B), then the grants.
for r in "${ROUTES[@]}"; do
    IFS='|' read -r M PTH BD W T <<<"$r"
    n="$M $PTH"
    req "$M" "$F$PTH" "" "$BD"
    expect_eq "$n, no credential: 401" 401 "$CODE"
    expect_match "$n, no credential: WWW-Authenticate" 'WWW-Authenticate: Bearer realm' "$HDRS"
    req "$M" "$F$PTH" "$WRONG" "$BD"
    expect_eq "$n, a wrong key: 403" 403 "$CODE"
    req "$M" "$F$PTH" "$TA" "$BD"
    expect_eq "$n, another promise's token: 403" 403 "$CODE"
    expect_no_match "$n, another promise's token: no value" "secret of A" "$BODY"
    req "$M" "$F$PTH" "$TE" "$BD"
    expect_eq "$n, an expired token: 403" 403 "$CODE"
    if [ "$W" = 1 ]; then
        req "$M" "$F$PTH" "$KR" "$BD"
        expect_eq "$n, a read key: 403" 403 "$CODE"
        expect_match "$n, a read key: insufficient_scope" 'insufficient_scope' "$HDRS"
    fi
    if [ "$T" = 0 ]; then
        req "$M" "$F$PTH" "$TB" "$BD"
        expect_eq "$n, a token of B (not a client): 403" 403 "$CODE"
    fi
    req "$M" "$P$PTH" "$KW" "$BD"
    if [ "$T" = 1 ]; then
        expect_eq "$n, public listener, write key: 403 (tokens only)" 403 "$CODE"
        req "$M" "$P$PTH" "" "$BD"
        expect_eq "$n, public listener, no credential: 401" 401 "$CODE"
    else
        expect_eq "$n, public listener: 404 for a client route" 404 "$CODE"
    fi
done
req GET "$F/v1/promises/$B" "$KR"
expect_eq "after every refusal: B still pending" pending "$(json_get "$BODY" state)"
for r in "${ROUTES[@]}"; do
    IFS='|' read -r M PTH BD W T <<<"$r"
    n="$M $PTH"
    [ "$W" = 0 ] && { req "$M" "$F$PTH" "$KR" "$BD"; expect_eq "$n, a read key: 200" 200 "$CODE"; }
    case "$PTH" in */reject | */cancel | */resolve) continue ;; esac # settle B once, below
    req "$M" "$F$PTH" "$KW" "$BD"
    expect_match "$n, a write key: 2xx" '^20[01]$' "$CODE"
    if [ "$T" = 1 ]; then
        req "$M" "$P$PTH" "$TB" "$BD"
        expect_eq "$n, public listener, B's token: 200" 200 "$CODE"
        req "$M" "$F$PTH" "$TB" "$BD"
        expect_eq "$n, full listener, B's token: 200" 200 "$CODE"
    fi
done
req POST "$P/v1/promises/$B/resolve" "$TB" '{"value":"b"}'
expect_eq "B's token resolves B on the public listener" 200 "$CODE"
req POST "$F/v1/promises" "$KW" '{}'
C=$(json_get "$BODY" id)
req POST "$F/v1/promises/$C/cancel" "$KW" '{}'
expect_eq "a write key cancels any promise" 200 "$CODE"
expect_eq "... canceled" canceled "$(json_get "$BODY" state)"

# A token holder of B never sees A's value.
req GET "$P/v1/promises/$A" "$TB"
expect_eq "B's token reading A: 403" 403 "$CODE"
expect_no_match "... no value of A" "secret of A" "$BODY"
req GET "$P/v1/promises?prefix=$A" "$TB"
expect_eq "B's token listing (public): 404" 404 "$CODE"
req GET "$F/v1/promises" "$TB"
expect_eq "B's token listing (full): 403" 403 "$CODE"
expect_no_match "... no value of A" "secret of A" "$BODY"
# A wrong token for an existing id and a token for a missing id: the same answer.
req GET "$P/v1/promises/$A" "$TB"
ANS1="$CODE $BODY"
req GET "$P/v1/promises/test-1-nosuch~1.1" "$TB"
expect_eq "a missing id answers as an existing one" "$ANS1" "$CODE $BODY"
# /metrics and /readyz only on the full listener.
req GET "$P/metrics"
expect_eq "public listener: no /metrics" 404 "$CODE"
req GET "$P/healthz"
expect_eq "public listener: /healthz" 200 "$CODE"

# The CLI mints tokens with a lifetime too.
run "$PMESH" --socket "$SOCK" create --token --token-ttl 1h
CT=$(sed -n 2p <<<"$OUT")
CI=$(sed -n 1p <<<"$OUT")
expect_match "pmesh create --token --token-ttl: an expiring token" '^[0-9]+\.[A-Za-z0-9_-]{43}$' "$CT"
req POST "$P/v1/promises/$CI/resolve" "$CT" '{"value":"cli"}'
expect_eq "... that settles its promise" 200 "$CODE"
run "$PMESH" --socket "$SOCK" create --token-ttl 1h
expect_eq "--token-ttl without --token: usage error" 64 "$RC"

# ---- metrics and logs -----------------------------------------------------------------
req GET "$F/metrics"
for reason in no_credential bad_credential token_expired wrong_scope public_route; do
    expect_match "refusals counted: $reason" "pmesh_http_refusals_total\\{reason=\"$reason\"\\} [1-9]" "$BODY"
done
check "refusals logged: PM-HTTP-UNAUTHORIZED" grep -q PM-HTTP-UNAUTHORIZED "$TMP/agent-1.log"
check "refusals logged: PM-HTTP-FORBIDDEN" grep -q PM-HTTP-FORBIDDEN "$TMP/agent-1.log"
check "the key never appears in the log" bash -c "! grep -qF -- '$KW' '$TMP/agent-1.log'"

# ---- rotation -------------------------------------------------------------------------
cat >"$TMP/keys.new" <<KEYS
functions2 write $KW2
KEYS
mv "$TMP/keys.new" "$TMP/keys"
kill -HUP "$APID"
rotated() { req GET "$F/v1/promises" "$KW2"; [ "$CODE" = 200 ]; }
check_fn "SIGHUP: the new key works" wait_for 5 rotated
req GET "$F/v1/promises" "$KW"
expect_eq "SIGHUP: the removed key is refused" 403 "$CODE"
check_fn "SIGHUP: the agent is still running" alive "$APID"
check "SIGHUP: logged" grep -q "PM-HTTP-KEYS-LOADED.*SIGHUP" "$TMP/agent-1.log"
echo "broken line" >"$TMP/keys"
kill -HUP "$APID"
check_fn "a bad file on reload is refused, logged with file:line" \
    wait_for 5 grep -q "PM-HTTP-KEYS-RELOAD-FAILED.*keys:1" "$TMP/agent-1.log"
req GET "$F/v1/promises" "$KW2"
expect_eq "... and the keys in force stay" 200 "$CODE"
# Without a signal: a Secret volume is updated in place.
echo "reader read $KR" >"$TMP/keys.new"
mv "$TMP/keys.new" "$TMP/keys"
changed() { req GET "$F/v1/promises" "$KR"; [ "$CODE" = 200 ]; }
check_fn "a changed keys file is picked up without a signal" wait_for 12 changed
req GET "$F/v1/promises" "$KW2"
expect_eq "... and the old key refused" 403 "$CODE"

# ---- config refusals ---------------------------------------------------------------------
run timeout 10 "$PMESHD" --socket "$TMP/x.sock" --node x --http "0.0.0.0:$HX"
expect_ne "a non-loopback --http without keys: refused" 0 "$RC"
expect_match "... saying what to do" "http_api_keys_file" "$ERR"
bg insecure "$PMESHD" --socket "$TMP/y.sock" --node y --http "0.0.0.0:$HX" --insecure-http
IPID=$BG_PID
check_fn "--insecure-http: it starts" wait_for 10 curl -sf "http://127.0.0.1:$HX/healthz"
check "... with a warning" grep -q PM-HTTP-INSECURE "$TMP/insecure.log"
req GET "http://127.0.0.1:$HX/v1/promises"
expect_eq "... and answers without a credential" 200 "$CODE"
kill "$IPID"
wait_exit "$IPID" 10
expect_eq "... stops on SIGTERM" 0 "$RC"
printf 'a read short\n' >"$TMP/bad-keys"
run timeout 10 "$PMESHD" --socket "$TMP/z.sock" --node z --http "127.0.0.1:$HX" \
    --http-api-keys-file "$TMP/bad-keys"
expect_ne "a bad keys file: refused at start" 0 "$RC"
expect_match "... with file:line" "bad-keys:1" "$ERR"
finish
