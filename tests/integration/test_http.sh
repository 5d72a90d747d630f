#!/usr/bin/env bash
# test_http.sh - the HTTP gateway end to end: real pmeshd agents with --http,
# driven with curl (and the CLI as "another client").
#
# Every endpoint and every status code; settle tokens (missing 401, wrong
# 403, another promise's 403, no secret 403, nothing changed after a
# refusal); long-polls that return when another client settles, that end
# with the pending promise, that are capped by http_max_wait, and that do
# not hold up other requests; routing through a non-owner agent (create on
# A over HTTP, settle over HTTP on B with the token); /metrics as
# Prometheus text; /readyz before and after joining; limits (labels, value,
# body, headers, connections); shutdown with parked long-polls.
#
#   BUILD=build tests/integration/test_http.sh
. "$(dirname "$0")/lib.sh"

command -v curl >/dev/null || { echo "test_http.sh: curl is needed" >&2; exit 1; }

# ---- ports (lib.sh take_port: below the ephemeral range, skipping any in use) ----------
take_port; H1=$PORT
take_port; H2=$PORT
take_port; H3=$PORT
take_port; H4=$PORT
take_port; M1=$PORT
take_port; M2=$PORT
take_port; M3=$PORT
take_port; DEAD=$PORT # a seed nobody answers on
take_port; P1=$PORT   # agent 1's public listener

# ---- helpers ---------------------------------------------------------------------------

# req METHOD URL [CURL ARGS...]: sets CODE (000 if no HTTP answer), BODY, HDRS.
req() {
    local m=$1 url=$2
    shift 2
    local rc=0
    CODE=$(timeout -k 2 "$CMD_TIMEOUT" curl -s -o "$TMP/body" -D "$TMP/hdrs" -w '%{http_code}' \
        -X "$m" "$@" "$url") || rc=$?
    [ "$rc" = 0 ] || CODE=${CODE:-000}
    BODY=$(cat "$TMP/body" 2>/dev/null || true)
    HDRS=$(tr -d '\r' <"$TMP/hdrs" 2>/dev/null || true)
    : >"$TMP/body"
}

# post URL JSON [TOKEN]
post() {
    local url=$1 data=$2 tok=${3:-}
    if [ -n "$tok" ]; then
        req POST "$url" -H "Authorization: Bearer $tok" --data-binary "$data"
    else
        req POST "$url" --data-binary "$data"
    fi
}

# expect_error NAME STATUS CODE: the last response is STATUS with {"error":CODE,"message":..}.
expect_error() {
    expect_eq "$1: status $2" "$2" "$CODE"
    expect_eq "$1: error $3" "$3" "$(json_get "$BODY" error)"
    expect_match "$1: has a message" '.' "$(json_get "$BODY" message | sed 's/<absent>//')"
}

state_of() { # URL ID -> state over HTTP
    req GET "$1/v1/promises/$2"
    json_get "$BODY" state
}

A=http://127.0.0.1:$H1
B=http://127.0.0.1:$H2
C=http://127.0.0.1:$H3
D=http://127.0.0.1:$H4
AP=http://127.0.0.1:$P1 # agent 1's public listener: settle tokens only
SECRET=$TMP/secret
head -c 48 /dev/urandom | base64 >"$SECRET"

# ---- a 2-agent mesh, both with the gateway and the same secret -------------------------

# The mesh is CURVE-encrypted when this pmeshd knows how (one shared keypair).
MESH_SEC=()
if [[ $("$PMESHD" --help 2>/dev/null) == *--mesh-key-dir* ]]; then
    "$PMESHD" --keygen "$TMP/meshkeys" >/dev/null
    MESH_SEC=(--mesh-key-dir "$TMP/meshkeys")
fi
start_agent 1 --bind "tcp://127.0.0.1:$M1" "${MESH_SEC[@]}" --http "127.0.0.1:$H1" \
    --http-public "127.0.0.1:$P1" --token-secret-file "$SECRET" \
    --max-labels 3 --max-value-bytes 4096 --http-max-wait 2s
SOCK1=$AGENT_SOCK
PID1=$AGENT_PID
start_agent 2 --bind "tcp://127.0.0.1:$M2" "${MESH_SEC[@]}" --seed "tcp://127.0.0.1:$M1" \
    --http "127.0.0.1:$H2" --token-secret-file "$SECRET" --max-value-bytes 4096
SOCK2=$AGENT_SOCK
joined() {
    [ "$(json_get "$("$PMESH" --socket "$1" status)" mesh.members.alive)" = 2 ]
}
if wait_for 15 joined "$SOCK1"; then ok "the two agents see each other"; else not_ok "the two agents see each other"; fi
wait_for 15 joined "$SOCK2" || true
wait_for 10 curl -sf "$A/healthz" || true
wait_for 10 curl -sf "$B/healthz" || true

# ---- health and readiness --------------------------------------------------------------

req GET "$A/healthz"
expect_eq "healthz: 200" 200 "$CODE"
expect_eq "healthz: status ok" ok "$(json_get "$BODY" status)"
expect_match "healthz: JSON content type" "Content-Type: application/json" "$HDRS"
req HEAD "$A/healthz" -I
expect_eq "healthz: HEAD 200" 200 "$CODE"
wait_for 10 curl -sf "$A/readyz" || true
req GET "$A/readyz"
expect_eq "readyz on a joined agent: 200" 200 "$CODE"
expect_eq "readyz: ready true" true "$(json_get "$BODY" ready)"
expect_eq "readyz: members alive 2" 2 "$(json_get "$BODY" members_alive)"
req GET "$B/readyz"
expect_eq "readyz on the second agent: 200" 200 "$CODE"
req POST "$A/healthz"
expect_error "POST /healthz" 405 METHOD_NOT_ALLOWED

# An agent whose seed never answers is not ready (still alone, inside the join
# grace); one without a token secret serves reads and creates but no settles.
start_agent 3 --bind "tcp://127.0.0.1:$M3" "${MESH_SEC[@]}" --seed "tcp://127.0.0.1:$DEAD" \
    --http "127.0.0.1:$H3" --http-max-connections 2
PID3=$AGENT_PID
SOCK3=$AGENT_SOCK
wait_for 10 curl -s -o /dev/null "$C/healthz" || true
req GET "$C/readyz"
expect_error "readyz on an agent whose seeds never answered" 503 NOT_READY
expect_match "readyz says why" "alone|seed" "$(json_get "$BODY" message)"
req GET "$C/healthz"
expect_eq "healthz is 200 while not ready" 200 "$CODE"

# ---- create ----------------------------------------------------------------------------

post "$A/v1/promises" '{"timeout":"5m","heartbeat":"2m","labels":{"team":"http","k":"v"}}'
expect_eq "create: 201" 201 "$CODE"
P=$(json_get "$BODY" id)
TOK=$(json_get "$BODY" settle_token)
expect_match "create: id in agent 1's space" "^test-1-" "$P"
expect_eq "create: pending" pending "$(json_get "$BODY" state)"
expect_eq "create: labels" http "$(json_get "$BODY" labels.team)"
expect_eq "create: heartbeat_ms" 120000 "$(json_get "$BODY" heartbeat_ms)"
expect_match "create: timeout_at_ms set" '^[0-9]+$' "$(json_get "$BODY" timeout_at_ms)"
expect_match "create: a 43-character base64url token" '^[A-Za-z0-9_-]{43}$' "$TOK"
expect_eq "create: callback_url on the public listener" "$AP/v1/promises/$P/resolve" "$(json_get "$BODY" callback_url)"
expect_match "create: JSON content type" "Content-Type: application/json" "$HDRS"

# The HTTP view of a promise is the CLI's view, byte for byte.
req GET "$A/v1/promises/$P"
expect_eq "get: 200" 200 "$CODE"
run "$PMESH" --socket "$SOCK1" get "$P"
expect_eq "get over HTTP prints what pmesh get prints" "$OUT" "$BODY"

post "$A/v1/promises" '{"idempotency_key":"order-17"}'
expect_eq "create with a key: 201" 201 "$CODE"
K=$(json_get "$BODY" id)
post "$A/v1/promises" '{"idempotency_key":"order-17"}'
expect_eq "same key again: 200" 200 "$CODE"
expect_eq "same key again: same id" "$K" "$(json_get "$BODY" id)"
expect_eq "same key again: key echoed" order-17 "$(json_get "$BODY" idempotency_key)"
post "$A/v1/promises" ''
expect_eq "create with an empty body: 201" 201 "$CODE"
P2=$(json_get "$BODY" id)
TOK2=$(json_get "$BODY" settle_token)

# ---- create: refusals ------------------------------------------------------------------

post "$A/v1/promises" '{"timeout":'
expect_error "malformed JSON" 400 BAD_REQUEST
post "$A/v1/promises" '[1,2]'
expect_error "a body that is not an object" 400 BAD_REQUEST
post "$A/v1/promises" '{"timeout":"60s","colour":"red"}'
expect_error "unknown field" 400 BAD_REQUEST
expect_match "unknown field: named" colour "$(json_get "$BODY" message)"
post "$A/v1/promises" '{"timeout":"soon"}'
expect_error "bad duration" 400 BAD_REQUEST
post "$A/v1/promises" '{"timeout":60}'
expect_error "a duration that is a number" 400 BAD_REQUEST
post "$A/v1/promises" '{"timeout":"60s","timeout":"1s"}'
expect_error "duplicate field" 400 BAD_REQUEST
post "$A/v1/promises" '{"labels":{"a":"1","b":"2","c":"3","d":"4"}}'
expect_error "more labels than max_labels (3)" 400 BAD_REQUEST
post "$A/v1/promises" '{"labels":{"a":1}}'
expect_error "a label value that is not a string" 400 BAD_REQUEST
req POST "$A/v1/promises?x=1" --data-binary '{}'
expect_error "query on create" 400 BAD_REQUEST

# ---- get, list ---------------------------------------------------------------------------

req GET "$A/v1/promises/test-1-nosuch~1.1"
expect_error "get of an unknown id" 404 NOT_FOUND
req GET "$A/v1/promises/bad%20id"
expect_error "get of a malformed id" 400 BAD_REQUEST
req GET "$A/v1/promises/$P?wait=bogus"
expect_error "bad wait" 400 BAD_REQUEST
req GET "$A/v1/promises/$P?colour=red"
expect_error "unknown query parameter on get" 400 BAD_REQUEST
req GET "$A/v1/promises?label=team=http"
expect_eq "list by label: 200" 200 "$CODE"
expect_eq "list by label: exactly the labelled promise" "[\"$P\"]" \
    "$(python3 -c 'import json,sys; print(json.dumps([p["id"] for p in json.loads(sys.argv[1])["promises"]]))' "$BODY")"
req GET "$A/v1/promises?state=pending&prefix=test-1-&limit=1"
expect_eq "list pending, limit 1: 200" 200 "$CODE"
expect_eq "list limit 1: one promise" 1 \
    "$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["promises"]))' "$BODY")"
CUR=$(json_get "$BODY" cursor)
expect_ne "list limit 1: a cursor for the next page" "<absent>" "$CUR"
req GET "$A/v1/promises?state=pending&prefix=test-1-&limit=1&cursor=$(python3 -c 'import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1]))' "$CUR")"
expect_eq "list next page: 200" 200 "$CODE"
req GET "$A/v1/promises?state=sleepy"
expect_error "list with a bad state" 400 BAD_REQUEST
req GET "$A/v1/promises?limit=0"
expect_error "list with limit 0" 400 BAD_REQUEST
req GET "$A/v1/promises?state=pending&state=resolved"
expect_error "list with a repeated parameter" 400 BAD_REQUEST
req GET "$A/v1/promises?sort=asc"
expect_error "list with an unknown parameter" 400 BAD_REQUEST

# ---- unknown paths and methods -----------------------------------------------------------

req GET "$A/v2/promises"
expect_error "unknown path" 404 NOT_FOUND
req POST "$A/v1/promises/$P/explode" -H "Authorization: Bearer $TOK" --data-binary '{}'
expect_error "unknown action" 404 NOT_FOUND
req DELETE "$A/v1/promises/$P"
expect_error "DELETE a promise" 405 METHOD_NOT_ALLOWED
expect_match "405 says what is allowed" "Allow: GET, HEAD" "$HDRS"
req GET "$A/v1/promises/$P/resolve"
expect_error "GET on resolve" 405 METHOD_NOT_ALLOWED
req PUT "$A/v1/promises" --data-binary '{}'
expect_error "PUT on the collection" 405 METHOD_NOT_ALLOWED

# ---- tokens (on the public listener; tests/integration/test_http_auth.sh has the whole matrix)

post "$AP/v1/promises/$P/resolve" '{"value":"stolen"}'
expect_error "resolve without a token" 401 UNAUTHORIZED
expect_match "401 carries WWW-Authenticate" "WWW-Authenticate: Bearer" "$HDRS"
req POST "$AP/v1/promises/$P/resolve" -H "Authorization: Basic $TOK" --data-binary '{"value":"x"}'
expect_error "resolve with another auth scheme" 401 UNAUTHORIZED
post "$AP/v1/promises/$P/resolve" '{"value":"stolen"}' "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
expect_error "resolve with a wrong token" 403 FORBIDDEN
post "$AP/v1/promises/$P/resolve" '{"value":"stolen"}' "$TOK2"
expect_error "resolve with another promise's token" 403 FORBIDDEN
post "$AP/v1/promises/$P/reject" '{"reason":"stolen"}' "$TOK2"
expect_error "reject with another promise's token" 403 FORBIDDEN
post "$AP/v1/promises/$P/cancel" '' "${TOK}x"
expect_error "cancel with a token plus a character" 403 FORBIDDEN
post "$AP/v1/promises/$P/heartbeat" ''
expect_error "heartbeat without a token" 401 UNAUTHORIZED
req GET "$A/v1/promises/$P"
expect_eq "after the refusals: still pending" pending "$(json_get "$BODY" state)"
expect_eq "after the refusals: no value" "<absent>" "$(json_get "$BODY" value)"

# ---- settling ----------------------------------------------------------------------------

req GET "$A/v1/promises/$P"
HB0=$(json_get "$BODY" heartbeat_at_ms)
# Time must pass for a heartbeat to move the deadline (ms resolution).
sleep 0.05
post "$A/v1/promises/$P/heartbeat" '' "$TOK"
expect_eq "heartbeat with the token: 200" 200 "$CODE"
expect_eq "heartbeat: still pending" pending "$(json_get "$BODY" state)"
HB1=$(json_get "$BODY" heartbeat_at_ms)
expect_lt "heartbeat moved the deadline" "$HB0" "$HB1"
post "$A/v1/promises/$P/resolve" '{"value":"paid"}' "$TOK"
expect_eq "resolve with the token: 200" 200 "$CODE"
expect_eq "resolve: resolved" resolved "$(json_get "$BODY" state)"
expect_eq "resolve: the value" paid "$(json_get "$BODY" value)"
run "$PMESH" --socket "$SOCK1" get "$P"
expect_eq "the CLI sees the value" paid "$(json_get "$OUT" value)"
post "$A/v1/promises/$P/resolve" '{"value":"paid"}' "$TOK"
expect_eq "the same resolve again: 200 (idempotent)" 200 "$CODE"
post "$A/v1/promises/$P/resolve" '{"value":"refund"}' "$TOK"
expect_error "another value" 409 ALREADY_SETTLED
post "$A/v1/promises/$P/heartbeat" '' "$TOK"
expect_eq "heartbeat of a settled promise: 409" 409 "$CODE"

post "$A/v1/promises" ''
B64P=$(json_get "$BODY" id)
B64T=$(json_get "$BODY" settle_token)
post "$A/v1/promises/$B64P/resolve" '{"value_b64":"AAEC/w=="}' "$B64T"
expect_eq "resolve with value_b64: 200" 200 "$CODE"
expect_eq "binary value comes back as value_b64" "AAEC/w==" "$(json_get "$BODY" value_b64)"
post "$A/v1/promises/$P2/resolve" '{"value_b64":"not base64!"}' "$TOK2"
expect_error "bad base64" 400 BAD_REQUEST
post "$A/v1/promises/$P2/resolve" '{"value":"a","value_b64":"YQ=="}' "$TOK2"
expect_error "value and value_b64 together" 400 BAD_REQUEST
post "$A/v1/promises/$P2/resolve" '{}' "$TOK2"
expect_error "resolve without a value" 400 BAD_REQUEST
post "$A/v1/promises/$P2/resolve" '{"value":7}' "$TOK2"
expect_error "a value that is not a string" 400 BAD_REQUEST
BIG=$(head -c 5000 /dev/zero | tr '\0' a)
post "$A/v1/promises/$P2/resolve" "{\"value\":\"$BIG\"}" "$TOK2"
expect_error "a value over max_value_bytes" 413 VALUE_TOO_LARGE
head -c $((4096 + 65536 + 10)) /dev/zero | tr '\0' ' ' >"$TMP/huge"
req POST "$A/v1/promises/$P2/resolve" -H "Authorization: Bearer $TOK2" --data-binary @"$TMP/huge"
expect_error "a body over max_value_bytes + 64 KiB (Content-Length)" 413 VALUE_TOO_LARGE
req POST "$A/v1/promises/$P2/resolve" -H "Authorization: Bearer $TOK2" \
    -H "Transfer-Encoding: chunked" --data-binary @"$TMP/huge"
expect_error "a chunked body over the limit" 413 VALUE_TOO_LARGE
req GET "$A/v1/promises/$P2"
expect_eq "after the refused settles: still pending" pending "$(json_get "$BODY" state)"

post "$A/v1/promises/$P2/reject" '{"reason":"card declined"}' "$TOK2"
expect_eq "reject: 200" 200 "$CODE"
expect_eq "reject: rejected" rejected "$(json_get "$BODY" state)"
expect_eq "reject: reason" "card declined" "$(json_get "$BODY" reason)"
post "$A/v1/promises" ''
CP=$(json_get "$BODY" id)
CT=$(json_get "$BODY" settle_token)
post "$A/v1/promises/$CP/cancel" '{"reason":"x"}' "$CT"
expect_error "cancel takes no fields" 400 BAD_REQUEST
post "$A/v1/promises/$CP/cancel" '' "$CT"
expect_eq "cancel: 200" 200 "$CODE"
expect_eq "cancel: canceled" canceled "$(json_get "$BODY" state)"
post "$A/v1/promises/$CP/resolve" '{"value":"late"}' "$CT"
expect_error "resolve after cancel" 409 ALREADY_SETTLED

post "$A/v1/promises" '{"timeout":"300ms"}'
TP=$(json_get "$BODY" id)
TT=$(json_get "$BODY" settle_token)
need "the 300ms promise times out" 10 promise_state_is "$SOCK1" "$TP" timedout
post "$A/v1/promises/$TP/resolve" '{"value":"too late"}' "$TT"
expect_error "resolve after the timeout" 410 TIMED_OUT
post "$A/v1/promises/test-1-nosuch~1.1/resolve" '{"value":"x"}' \
    "$(json_get "$(curl -s -XPOST "$A/v1/promises" -d '')" settle_token)"
expect_error "a token for another id on an unknown id" 403 FORBIDDEN

# ---- long-polls ----------------------------------------------------------------------------

post "$A/v1/promises" ''
LP=$(json_get "$BODY" id)
LT=$(json_get "$BODY" settle_token)
T0=$(now_ms)
req GET "$A/v1/promises/$LP?wait=400ms"
T1=$(now_ms)
expect_eq "a long-poll that ends: 200" 200 "$CODE"
expect_eq "... with the pending promise" pending "$(json_get "$BODY" state)"
expect_lt "... after about the wait (>= 350 ms)" 349 $((T1 - T0))
T0=$(now_ms)
req GET "$A/v1/promises/$LP?wait=30s"
T1=$(now_ms)
expect_eq "a long-poll over http_max_wait (2s) is capped: 200" 200 "$CODE"
expect_lt "... within ~2 s" $((T1 - T0)) 3500

WA=$(agent_stat "$SOCK1" clients.waiters)
WB=$(agent_stat "$SOCK2" clients.waiters)
bg lp curl -s -o "$TMP/lp.body" -w '%{http_code}' "$B/v1/promises/$LP?wait=20s"
LPPID=$BG_PID
need_waiters "$SOCK2" $((WB + 1)) # the long-poll parked at agent 2
need_waiters "$SOCK1" $((WA + 1)) # ... and its subscription at the owner
T0=$(now_ms)
run "$PMESH" --socket "$SOCK1" resolve "$LP" "from the CLI"
expect_eq "another client resolves" 0 "$RC"
wait_exit "$LPPID" 10
T1=$(now_ms)
expect_eq "the long-poll on the other agent returns" 0 "$RC"
expect_eq "... 200" 200 "$(cat "$TMP/lp.out")"
expect_eq "... with the value" "from the CLI" "$(json_get "$(cat "$TMP/lp.body")" value)"
expect_lt "... promptly (< 2 s)" $((T1 - T0)) 2000

# Many parked long-polls do not hold up anything else.
post "$B/v1/promises" ''
MP=$(json_get "$BODY" id)
MT=$(json_get "$BODY" settle_token)
MANY=150
WB=$(agent_stat "$SOCK2" clients.waiters)
for i in $(seq "$MANY"); do
    curl -s -o "$TMP/many.$i" -w '%{http_code}' "$B/v1/promises/$MP?wait=15s" >"$TMP/many.$i.code" &
    echo $! >>"$CHILD_PIDS"
done
need_waiters "$SOCK2" $((WB + MANY)) 20 # every long-poll parked
T0=$(now_ms)
post "$A/v1/promises" ''
QP=$(json_get "$BODY" id)
post "$A/v1/promises/$QP/resolve" '{"value":"quick"}' "$(json_get "$BODY" settle_token)"
req GET "$A/v1/promises/$QP"
T1=$(now_ms)
expect_eq "with $MANY long-polls parked, create+resolve+get still work" resolved \
    "$(json_get "$BODY" state)"
expect_lt "... quickly (< 1 s)" $((T1 - T0)) 1000
req GET "$B/metrics"
W=$(grep -E '^pmesh_http_waiting_requests ' <<<"$BODY" | awk '{print $2}')
expect_lt "metrics count the parked long-polls ($W)" $((MANY - 1)) "${W:-0}"
post "$B/v1/promises/$MP/resolve" '{"value":"all"}' "$MT"
expect_eq "resolve of the awaited promise" 200 "$CODE"
all_done() {
    local i
    for i in $(seq "$MANY"); do
        [ "$(cat "$TMP/many.$i.code" 2>/dev/null)" = 200 ] || return 1
    done
}
if wait_for 10 all_done; then ok "all $MANY long-polls answered 200"; else not_ok "all $MANY long-polls answered 200"; fi
GOT=$(python3 -c '
import json, sys
n = 0
for i in range(1, int(sys.argv[2]) + 1):
    try:
        n += json.load(open("%s/many.%d" % (sys.argv[1], i))).get("value") == "all"
    except Exception:
        pass
print(n)' "$TMP" "$MANY")
expect_eq "... each with the value" "$MANY" "$GOT"

# ---- routing through a non-owner agent --------------------------------------------------------

post "$A/v1/promises" '{"labels":{"route":"yes"}}'
RP=$(json_get "$BODY" id)
RT=$(json_get "$BODY" settle_token)
expect_match "created on agent 1" "^test-1-" "$RP"
req GET "$B/v1/promises/$RP"
expect_eq "agent 2 reads agent 1's promise over HTTP" pending "$(json_get "$BODY" state)"
post "$B/v1/promises/$RP/resolve" '{"value":"via B"}' "$TOK"
expect_error "agent 2 refuses another promise's token (no lookup needed)" 403 FORBIDDEN
post "$B/v1/promises/$RP/resolve" '{"value":"via B"}' "$RT"
expect_eq "agent 2 resolves agent 1's promise with its token: 200" 200 "$CODE"
expect_eq "... and answers with the promise" "via B" "$(json_get "$BODY" value)"
run "$PMESH" --socket "$SOCK1" get "$RP"
expect_eq "the owner (agent 1) has the value" "via B" "$(json_get "$OUT" value)"
post "$B/v1/promises" ''
RP2=$(json_get "$BODY" id)
RT2=$(json_get "$BODY" settle_token)
expect_match "created on agent 2" "^test-2-" "$RP2"
post "$A/v1/promises/$RP2/heartbeat" '' "$RT2"
expect_eq "heartbeat through agent 1 for agent 2's promise: 200" 200 "$CODE"
post "$A/v1/promises/$RP2/reject" '{"reason":"via A"}' "$RT2"
expect_eq "reject through agent 1 for agent 2's promise: 200" 200 "$CODE"
expect_eq "... rejected" rejected "$(state_of "$B" "$RP2")"

# ---- no token secret: no settling over HTTP -----------------------------------------------------

post "$C/v1/promises" ''
expect_eq "create without a secret: 201" 201 "$CODE"
NP=$(json_get "$BODY" id)
expect_eq "... without a settle_token" "<absent>" "$(json_get "$BODY" settle_token)"
post "$C/v1/promises/$NP/resolve" '{"value":"x"}' "$TOK"
expect_error "settle without a secret" 403 FORBIDDEN
expect_match "... says why" token_secret_file "$(json_get "$BODY" message)"
expect_eq "... nothing changed" pending "$(state_of "$C" "$NP")"

# ---- /metrics --------------------------------------------------------------------------------

req GET "$A/metrics"
expect_eq "metrics: 200" 200 "$CODE"
expect_match "metrics: Prometheus text content type" "Content-Type: text/plain; version=0.0.4" "$HDRS"
cat >"$TMP/promcheck.py" <<'EOF'
import re, sys
text = sys.stdin.read()
sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? (-?[0-9.]+(e[+-]?[0-9]+)?|\+Inf|-Inf|NaN)$')
typed, helped, problems = {}, set(), []
for n, line in enumerate(text.splitlines(), 1):
    if line.startswith('# HELP '):
        helped.add(line.split()[2]); continue
    if line.startswith('# TYPE '):
        parts = line.split()
        if parts[3] not in ('counter', 'gauge', 'histogram', 'summary', 'untyped'):
            problems.append('line %d: bad type' % n)
        typed[parts[2]] = parts[3]; continue
    m = sample.match(line)
    if not m:
        problems.append('line %d: not a sample: %r' % (n, line)); continue
    name = m.group(1)
    base = re.sub(r'_(bucket|sum|count)$', '', name) if name not in typed else name
    if base not in typed or base not in helped:
        problems.append('line %d: %s has no TYPE/HELP' % (n, name))
print('\n'.join(problems[:5]) if problems else 'ok')
EOF
expect_eq "metrics: every line is a valid sample with HELP and TYPE" ok \
    "$(python3 "$TMP/promcheck.py" <<<"$BODY")"
metric() { grep -F "$1 " <<<"$BODY" | grep -v '^#' | head -1 | awk '{print $NF}'; }
expect_eq "metrics: pmesh_up 1" 1 "$(metric 'pmesh_up')"
expect_match "metrics: promises by state" '^[0-9]+$' "$(metric 'pmesh_promises{state="pending"}')"
expect_match "metrics: ops by type and result" '^[1-9][0-9]*$' \
    "$(metric 'pmesh_operations_total{type="create",result="ok"}')"
expect_eq "metrics: mesh members alive" 2 "$(metric 'pmesh_mesh_members{state="alive"}')"
expect_match "metrics: mesh messages by type" 'pmesh_mesh_messages_total\{direction="sent",type="swim_ping"\} [0-9]+' "$BODY"
expect_match "metrics: mesh bytes" 'pmesh_mesh_bytes_total\{direction="received",type="[a-z_-]+"\} [0-9]+' "$BODY"
expect_match "metrics: replication" 'pmesh_replication_produced_total [0-9]+' "$BODY"
expect_match "metrics: http requests by code" '^[1-9][0-9]*$' \
    "$(metric 'pmesh_http_requests_total{code="201"}')"
expect_match "metrics: http 403s counted" '^[1-9][0-9]*$' \
    "$(metric 'pmesh_http_requests_total{code="403"}')"
expect_match "metrics: latency histogram +Inf bucket" \
    'pmesh_http_request_duration_seconds_bucket\{route="resolve",le="\+Inf"\} [1-9][0-9]*' "$BODY"
expect_match "metrics: agent operation latency histogram (create)" \
    'pmesh_operation_duration_seconds_bucket\{type="create",le="\+Inf"\} [1-9][0-9]*' "$BODY"
expect_match "metrics: ... with its count" \
    'pmesh_operation_duration_seconds_count\{type="settle"\} [1-9][0-9]*' "$BODY"
expect_match "metrics: refusals by reason (bad_credential)" '^[1-9][0-9]*$' \
    "$(metric 'pmesh_http_refusals_total{reason="bad_credential"}')"
expect_match "metrics: refusals by reason (too_many_labels)" '^[1-9][0-9]*$' \
    "$(metric 'pmesh_http_refusals_total{reason="too_many_labels"}')"
expect_match "metrics: refusals by reason (body_too_large)" '^[1-9][0-9]*$' \
    "$(metric 'pmesh_http_refusals_total{reason="body_too_large"}')"
check "refusals are logged with stable tags" grep -q "PM-HTTP-FORBIDDEN" "$TMP/agent-1.log"
check "... 401s too" grep -q "PM-HTTP-UNAUTHORIZED" "$TMP/agent-1.log"

# ---- header and connection limits -------------------------------------------------------------

req GET "$A/healthz" -H "X-Big: $(head -c 40000 /dev/zero | tr '\0' b)"
expect_eq "a header block over the per-connection memory: 431" 431 "$CODE"
# Agent 3 takes 2 connections: with 2 long-polls parked, more connections
# are answered 503 LIMIT at once (not left waiting in the backlog).
post "$C/v1/promises" ''
HP=$(json_get "$BODY" id)
WC=$(agent_stat "$SOCK3" clients.waiters)
for i in 1 2; do
    curl -s -o /dev/null -w '%{http_code}' "$C/v1/promises/$HP?wait=3s" >"$TMP/cl.$i" &
    echo $! >>"$CHILD_PIDS"
done
need_waiters "$SOCK3" $((WC + 2)) # both connections parked
T0=$(now_ms)
req GET "$C/healthz"
T1=$(now_ms)
expect_error "over http_max_connections (2)" 503 LIMIT
expect_lt "... at once (< 1 s)" $((T1 - T0)) 1000
expect_match "... with Retry-After" "Retry-After: 1" "$HDRS"
# Both codes, not the second alone: the two 3 s long-polls end in either order.
wait_for 6 test -s "$TMP/cl.1" -a -s "$TMP/cl.2" || true
expect_eq "the parked long-polls were served" "200 200" "$(cat "$TMP/cl.1") $(cat "$TMP/cl.2")"
req GET "$C/healthz"
expect_eq "once they end, connections are admitted again" 200 "$CODE"
req GET "$C/metrics"
expect_match "connection refusals are counted" '^[1-9][0-9]*$' \
    "$(grep -F 'pmesh_http_refusals_total{reason="connection_limit"} ' <<<"$BODY" | awk '{print $2}')"
check "... and logged" grep -q "PM-HTTP-CONN-LIMIT" "$TMP/agent-3.log"

# ---- start-up refusals ----------------------------------------------------------------------

run "$PMESHD" --socket "$TMP/x.sock" --node test-x --http "127.0.0.1:$H2"
expect_eq "an HTTP port already in use: pmeshd exits 1" 1 "$RC"
expect_match "... saying so" "PM-HTTP-START.*127.0.0.1:$H2" "$ERR"
echo "too-short" >"$TMP/short.secret"
run "$PMESHD" --socket "$TMP/x.sock" --node test-x --http "127.0.0.1:$H4" \
    --token-secret-file "$TMP/short.secret"
expect_ne "a token secret under 32 bytes: pmeshd refuses to start" 0 "$RC"
expect_match "... saying why" "at least 32" "$ERR"
run "$PMESHD" --socket "$TMP/x.sock" --node test-x --http "nonsense"
expect_ne "a malformed --http: pmeshd refuses to start" 0 "$RC"

# ---- shutdown with a parked long-poll ----------------------------------------------------------

post "$A/v1/promises" ''
SP=$(json_get "$BODY" id)
WA=$(agent_stat "$SOCK1" clients.waiters)
bg sd curl -s -o "$TMP/sd.body" -w '%{http_code}' "$A/v1/promises/$SP?wait=2s"
SDPID=$BG_PID
need_waiters "$SOCK1" $((WA + 1)) # the long-poll parked when the agent stops
kill -TERM "$PID1"
wait_exit "$SDPID" 10
expect_eq "a long-poll during shutdown is answered" 0 "$RC"
expect_eq "... with 503" 503 "$(cat "$TMP/sd.out")"
wait_exit "$PID1" 10
expect_eq "the agent exits 0 with the gateway" 0 "$RC"
check "it logged the gateway stopping" grep -q "PM-HTTP-STOPPING" "$TMP/agent-1.log"
req GET "$B/readyz"
expect_match "the surviving agent still answers readyz" '^(200|503)$' "$CODE"
kill -TERM "$PID3"
wait_exit "$PID3" 10
expect_eq "agent 3 exits 0" 0 "$RC"

finish
