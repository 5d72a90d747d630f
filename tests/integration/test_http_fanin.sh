#!/usr/bin/env bash
# test_http_fanin.sh - combinators over the HTTP gateway (issue 15): real
# pmeshd agents in a two-agent mesh (CURVE when available), driven with curl.
#
# POST /v1/promises/all|any|race|all-settled answers 201 with the new
# promise (no settle token, no callback_url), over inputs on both agents,
# duplicates counted; the outcomes and their list encodings (UTF-8 values
# as strings, other bytes as {"base64":..}); a combinator's own timeout;
# nesting; settling a combinator is 409 NOT_SETTLEABLE (with an API key and
# with any settle token); credentials: no key 401, a read key 403, an
# input's settle token 403, the public listener 404; the agent's
# max_fanin_inputs is 429 LIMIT; malformed bodies 400.
#
#   BUILD=build tests/integration/test_http_fanin.sh
. "$(dirname "$0")/lib.sh"

command -v curl >/dev/null || { echo "test_http_fanin.sh: curl is needed" >&2; exit 1; }

take_port; H1=$PORT
take_port; H2=$PORT
take_port; M1=$PORT
take_port; M2=$PORT
take_port; P1=$PORT

# req METHOD URL [CURL ARGS...]: sets CODE (000 if no HTTP answer) and BODY.
req() {
    local m=$1 url=$2
    shift 2
    local rc=0
    CODE=$(timeout -k 2 "$CMD_TIMEOUT" curl -s -o "$TMP/body" -w '%{http_code}' \
        -X "$m" "$@" "$url") || rc=$?
    [ "$rc" = 0 ] || CODE=${CODE:-000}
    BODY=$(cat "$TMP/body" 2>/dev/null || true)
    : >"$TMP/body"
}

# post URL JSON [CREDENTIAL]: with the write key unless told otherwise
# ("-": no Authorization header).
post() {
    local url=$1 data=$2 cred=${3:-$KW}
    if [ "$cred" = - ]; then
        req POST "$url" --data-binary "$data"
    else
        req POST "$url" -H "Authorization: Bearer $cred" --data-binary "$data"
    fi
}

# get URL ID [WAIT]: GET the promise with the write key (long-poll WAIT).
get() {
    req GET "$1/v1/promises/$2${3:+?wait=$3}" -H "Authorization: Bearer $KW"
}

expect_error() {
    expect_eq "$1: status $2" "$2" "$CODE"
    expect_eq "$1: error $3" "$3" "$(json_get "$BODY" error)"
}

# create URL: a new promise over HTTP; sets ID and TOK (its settle token).
create() {
    post "$1/v1/promises" '{"timeout":"5m"}'
    ID=$(json_get "$BODY" id)
    TOK=$(json_get "$BODY" settle_token)
    [ "$CODE" = 201 ] || not_ok "create on $1" "$CODE $BODY"
}

A=http://127.0.0.1:$H1
B=http://127.0.0.1:$H2
AP=http://127.0.0.1:$P1
head -c 48 /dev/urandom | base64 >"$TMP/secret"
KR=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
KW=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
cat >"$TMP/keys" <<KEYS
dashboards read  $KR
functions  write $KW
KEYS

MESH_SEC=()
if [[ $("$PMESHD" --help 2>/dev/null) == *--mesh-key-dir* ]]; then
    "$PMESHD" --keygen "$TMP/meshkeys" >/dev/null
    MESH_SEC=(--mesh-key-dir "$TMP/meshkeys")
fi
# --replicas 1: the gateway's semantics, not durability (test_fanin.sh has
# that); under load a suspected peer would otherwise refuse writes for a while
# (UNAVAILABLE: too few backups in sync), which is not what this tests.
COMMON=(--token-secret-file "$TMP/secret" --http-api-keys-file "$TMP/keys" --max-fanin-inputs 8
    --replicas 1)
start_agent 1 --bind "tcp://127.0.0.1:$M1" "${MESH_SEC[@]}" --http "127.0.0.1:$H1" \
    --http-public "127.0.0.1:$P1" "${COMMON[@]}"
SOCK1=$AGENT_SOCK
start_agent 2 --bind "tcp://127.0.0.1:$M2" "${MESH_SEC[@]}" --seed "tcp://127.0.0.1:$M1" \
    --http "127.0.0.1:$H2" "${COMMON[@]}"
SOCK2=$AGENT_SOCK
joined() {
    [ "$(json_get "$("$PMESH" --socket "$1" status)" mesh.members.alive)" = 2 ]
}
need "the two agents see each other" 15 joined "$SOCK1"
need "the two agents see each other (2)" 15 joined "$SOCK2"
need "gateway A" 10 curl -sf "$A/healthz"
need "gateway B" 10 curl -sf "$B/healthz"

# ---- all: inputs on both agents, duplicates, bytes ---------------------------------------

create "$A"; P1=$ID; T1=$TOK
create "$B"; P2=$ID; T2=$TOK
expect_match "inputs on two agents" "^test-2" "$P2"
post "$A/v1/promises/all" "{\"ids\":[\"$P1\",\"$P2\",\"$P1\"],\"timeout\":\"1m\"}"
expect_eq "all: 201" 201 "$CODE"
ALL=$(json_get "$BODY" id)
expect_eq "all: pending" pending "$(json_get "$BODY" state)"
expect_match "all: a new id of agent 1" "^test-1" "$ALL"
expect_eq "all: no settle token (nobody settles it)" "<absent>" "$(json_get "$BODY" settle_token)"
expect_eq "all: no callback_url" "<absent>" "$(json_get "$BODY" callback_url)"
get "$A" "$ALL"
expect_eq "all: readable at once" pending "$(json_get "$BODY" state)"

# Settling it directly is refused: 409 NOT_SETTLEABLE, with a key or any token.
post "$A/v1/promises/$ALL/resolve" '{"value":"forged"}'
expect_error "resolve a combinator with the write key" 409 NOT_SETTLEABLE
post "$A/v1/promises/$ALL/reject" '{"reason":"forged"}'
expect_error "reject a combinator" 409 NOT_SETTLEABLE
post "$B/v1/promises/$ALL/cancel" '{}'
expect_error "cancel a combinator through the other agent" 409 NOT_SETTLEABLE
post "$A/v1/promises/$ALL/resolve" '{"value":"forged"}' "$T1"
expect_error "an input's settle token does not settle the combinator" 403 FORBIDDEN
get "$A" "$ALL"
expect_eq "all: still pending after the refusals" pending "$(json_get "$BODY" state)"

post "$AP/v1/promises/$P1/resolve" '{"value":"héllo"}' "$T1"
expect_eq "settle input 1 on the public listener" 200 "$CODE"
get "$A" "$ALL"
expect_eq "all: pending with one input left" pending "$(json_get "$BODY" state)"
post "$B/v1/promises/$P2/resolve" '{"value_b64":"/wA="}' "$T2"
expect_eq "settle input 2 (bytes) on agent 2" 200 "$CODE"
get "$A" "$ALL" 10s
expect_eq "all: resolved" resolved "$(json_get "$BODY" state)"
VAL=$(json_get "$BODY" value)
expect_eq "all: values in input order, bytes as base64, duplicates counted" \
    '["héllo", {"base64": "/wA="}, "héllo"]' \
    "$(python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1]), ensure_ascii=False))' "$VAL")"
get "$B" "$ALL" 10s
expect_eq "all: the same through the other agent" resolved "$(json_get "$BODY" state)"
post "$A/v1/promises/$ALL/resolve" '{"value":"x"}'
expect_eq "resolve a settled combinator: 409" 409 "$CODE"
expect_match "resolve a settled combinator: refused" "^(NOT_SETTLEABLE|ALREADY_SETTLED)$" \
    "$(json_get "$BODY" error)"

# ---- any, race, all-settled, failures ------------------------------------------------------

create "$A"; R1=$ID; RT1=$TOK
create "$B"; R2=$ID; RT2=$TOK
post "$B/v1/promises/any" "{\"ids\":[\"$R1\",\"$R2\"]}"
expect_eq "any: 201 on agent 2" 201 "$CODE"
ANY=$(json_get "$BODY" id)
post "$A/v1/promises/race" "{\"ids\":[\"$R1\",\"$R2\"]}"
RACE=$(json_get "$BODY" id)
post "$A/v1/promises/all-settled" "{\"ids\":[\"$R1\",\"$R2\"]}"
expect_eq "all-settled: 201" 201 "$CODE"
SETTLED=$(json_get "$BODY" id)
post "$A/v1/promises/all" "{\"ids\":[\"$R1\",\"$R2\"]}"
ALL2=$(json_get "$BODY" id)
post "$A/v1/promises/$R1/reject" '{"reason":"nope"}' "$RT1"
expect_eq "reject input 1" 200 "$CODE"
get "$A" "$RACE" 10s
expect_eq "race: rejected as the first input" rejected "$(json_get "$BODY" state)"
expect_eq "race: with its reason" nope "$(json_get "$BODY" reason)"
get "$A" "$ALL2" 10s
expect_eq "all: rejected at the first failure" rejected "$(json_get "$BODY" state)"
expect_eq "all: the reason names the input" "$R1" "$(json_get "$(json_get "$BODY" reason)" id)"
get "$B" "$ANY"
expect_eq "any: still pending after one failure" pending "$(json_get "$BODY" state)"
post "$B/v1/promises/$R2/resolve" '{"value":"yes"}' "$RT2"
get "$B" "$ANY" 10s
expect_eq "any: resolved by the second" resolved "$(json_get "$BODY" state)"
expect_eq "any: with its value" yes "$(json_get "$BODY" value)"
get "$A" "$SETTLED" 10s
expect_eq "all-settled: resolved" resolved "$(json_get "$BODY" state)"
expect_eq "all-settled: each outcome" \
    '[{"reason": "nope", "state": "rejected"}, {"state": "resolved", "value": "yes"}]' \
    "$(python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1]), sort_keys=True))' "$(json_get "$BODY" value)")"

# ---- timeout and nesting ---------------------------------------------------------------------

create "$B"; N1=$ID
post "$A/v1/promises/all" "{\"ids\":[\"$N1\"],\"timeout\":\"300ms\"}"
TO=$(json_get "$BODY" id)
get "$A" "$TO" 10s
expect_eq "a combinator's own timeout" timedout "$(json_get "$BODY" state)"
get "$B" "$N1"
expect_eq "its input is untouched" pending "$(json_get "$BODY" state)"
post "$B/v1/promises/all-settled" "{\"ids\":[\"$ALL\",\"$TO\",\"$ANY\"]}"
expect_eq "nested: 201" 201 "$CODE"
NEST=$(json_get "$BODY" id)
get "$B" "$NEST" 10s
expect_eq "nested combinators: resolved" resolved "$(json_get "$BODY" state)"
expect_eq "nested: the inner outcomes" "resolved timedout resolved" \
    "$(python3 -c 'import json,sys; print(" ".join(o["state"] for o in json.loads(sys.argv[1])))' "$(json_get "$BODY" value)")"

# ---- credentials, limits, malformed requests --------------------------------------------------

post "$A/v1/promises/all" "{\"ids\":[\"$P1\"]}" -
expect_error "no credential" 401 UNAUTHORIZED
post "$A/v1/promises/all" "{\"ids\":[\"$P1\"]}" "$KR"
expect_error "a read key" 403 FORBIDDEN
post "$A/v1/promises/all" "{\"ids\":[\"$P1\"]}" "$T1"
expect_error "an input's settle token" 403 FORBIDDEN
post "$AP/v1/promises/all" "{\"ids\":[\"$P1\"]}" "$T1"
expect_error "the public listener does not serve combinators" 404 NOT_FOUND
req GET "$A/v1/promises/race" -H "Authorization: Bearer $KW"
expect_error "GET on a combinator route" 405 METHOD_NOT_ALLOWED
IDS=$(python3 -c 'import json,sys; print(json.dumps([sys.argv[1]] * 9))' "$P1")
post "$A/v1/promises/all" "{\"ids\":$IDS}"
expect_error "more inputs than max_fanin_inputs (8)" 429 LIMIT
IDS=$(python3 -c 'import json,sys; print(json.dumps([sys.argv[1]] * 8))' "$P1")
post "$A/v1/promises/all" "{\"ids\":$IDS}"
expect_eq "exactly max_fanin_inputs: 201" 201 "$CODE"
get "$A" "$(json_get "$BODY" id)" 10s
expect_eq "eight times the same input" 8 \
    "$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])))' "$(json_get "$BODY" value)")"
post "$A/v1/promises/all" '{"ids":[]}'
expect_error "no inputs" 400 BAD_REQUEST
post "$A/v1/promises/any" '{"ids":["not an id"]}'
expect_error "a malformed id" 400 BAD_REQUEST
post "$A/v1/promises/race" "{\"ids\":[\"$P1\"],\"timeout\":\"soon\"}"
expect_error "a bad timeout" 400 BAD_REQUEST
post "$A/v1/promises/all" "{\"ids\":[\"$P1\"],\"extra\":1}"
expect_error "an unknown field" 400 BAD_REQUEST

# An input that does not exist counts as rejected.
post "$A/v1/promises/all" "{\"ids\":[\"$P1\",\"test-2~zz.zz\"]}"
GHOST=$(json_get "$BODY" id)
get "$A" "$GHOST" 10s
expect_eq "an input nobody has: rejected" rejected "$(json_get "$BODY" state)"

# /metrics counts the route.
req GET "$A/metrics" -H "Authorization: Bearer $KR"
expect_match "metrics: the combine route" 'route="combine"' "$BODY"

finish
