#!/usr/bin/env bash
# HTTP functions: continuations served by POSTing to a URL (a stand-in FaaS
# router), with retries for 5xx and connection errors, rejections for 4xx,
# timeouts, many calls in flight without stalling the agent, and placement of
# an HTTP function from another agent of the mesh.
. "$(dirname "$0")/lib.sh"

PORT=$(free_ports 4)
DEAD_PORT=$((PORT + 1)) # nothing listens here
(cd "$TMP" && exec python3 "$OLDPWD/tests/integration/fake_faas.py" "$PORT" 2) \
    >"$TMP/faas.out" 2>"$TMP/faas.log" &
PIDS+=($!)
wait_for 10 curl -s -o /dev/null -X POST "http://127.0.0.1:$PORT/function/reverse" ||
    { echo "fake FaaS did not start" >&2; exit 1; }
: >"$TMP/calls.log"

F="http://127.0.0.1:$PORT/function"
start_agent 1 --http-functions "reverse=$F/reverse" \
    --http-functions "flaky=$F/flaky retries=3" \
    --http-functions "notfound=$F/notfound" \
    --http-functions "slow=$F/slow timeout=300ms retries=1" \
    --http-functions "gone=http://127.0.0.1:$DEAD_PORT/x retries=2" \
    --http-functions "many=$F/slow" --http-function-concurrency 300
S=$AGENT_SOCK
A1=$AGENT_PID
wait_for 5 sh -c "\"$PMESH\" --socket $S status | grep -q '\"workers\":6'" ||
    not_ok "six HTTP functions registered as workers"

chain() { # FUNCTION VALUE -> sets Q, RC, OUT
    local p
    p=$("$PMESH" --socket "$S" create)
    Q=$("$PMESH" --socket "$S" then "$p" "$1")
    "$PMESH" --socket "$S" resolve "$p" "$2"
    run "$PMESH" --socket "$S" await "$Q" --timeout 15s
}

chain reverse "hello"
expect_eq "a 2xx body resolves the continuation" "0 olleh" "$RC $OUT"

chain flaky "abc"
expect_eq "503s are retried until a 2xx" "0 cba" "$RC $OUT"
expect_eq "... the agent made 3 attempts (2 failures + 1 success)" 3 \
    "$(grep -c '^/function/flaky' "$TMP/calls.log")"
expect_match "... with attempt numbers 1,2,3" "3" "$(grep '^/function/flaky' "$TMP/calls.log" | tail -1 | cut -d' ' -f2)"

chain notfound "x"
expect_eq "a 4xx rejects at once" 1 "$RC"
expect_match "... with the status and body as the reason" "HTTP 404: no such function" "$ERR"
expect_eq "... and is not retried" 1 "$(grep -c '^/function/notfound' "$TMP/calls.log")"

chain slow "x"
expect_eq "a call past its timeout rejects (after its retries)" 1 "$RC"
expect_match "... saying it timed out" "[Tt]imed? ?out|timeout" "$ERR"

T0=$(now_ms)
chain gone "x"
expect_eq "connection refused rejects after the retries" 1 "$RC"
expect_match "... naming the connection error" "gone: .*(onnect|refused)" "$ERR"
expect_lt "... after backoff (>= 200 ms in all)" 200 $(($(now_ms) - T0 + 1))

# Hundreds in flight: 200 calls of a 1-second function at once, and the agent
# keeps answering meanwhile.
IDS=()
for i in $(seq 200); do
    p=$("$PMESH" --socket "$S" create)
    q=$("$PMESH" --socket "$S" then "$p" many)
    IDS+=("$p:$q")
done
COMPLETED0=$(agent_stat "$S" invocations.completed)
T0=$(now_ms)
# 50 clients at a time: 200 processes saying hello at once on a loaded
# 2-core box miss libpmesh's 3 s connect timeout (the agent is not what is
# under test there); 50 at a time still start the 200 calls within ~1 s.
printf '%s\n' "${IDS[@]%%:*}" >"$TMP/many.ids"
# The peak of invocations in flight, sampled while the calls run (one
# status read says little on a loaded machine: the first 1 s calls may be
# over before the last resolve is in).
( while [ ! -e "$TMP/many.done" ]; do
      "$PMESH" --socket "$S" status 2>/dev/null | python3 -c \
          'import json,sys; print(json.load(sys.stdin)["invocations"]["inflight"])' 2>/dev/null
      sleep 0.1
  done >"$TMP/many.inflight" ) &
SAMPLER=$!
echo "$SAMPLER" >>"$CHILD_PIDS"
resolve_failed=$(xargs -P 50 -I{} sh -c '"$0" --socket "$1" resolve "$2" v 2>/dev/null || echo failed' \
    "$PMESH" "$S" {} <"$TMP/many.ids" | grep -c failed || true)
expect_eq "200 resolves, 50 clients at a time: all acknowledged" 0 "$resolve_failed"
T1=$(now_ms)
run "$PMESH" --socket "$S" status
expect_eq "the agent answers status while 200 HTTP calls are in flight" 0 "$RC"
sleep 0.3 # one more sample after the last resolve
touch "$TMP/many.done"
wait "$SAMPLER" 2>/dev/null || true
INFL=$(sort -n "$TMP/many.inflight" | tail -1)
# The calls can overlap only as fast as the 200 resolves come in: at most
# 200 x 1 s / (the time they took) at once. Half of that, up to 50, is
# "many" (one at a time would be 1); the CLI processes start slowly under a
# sanitizer on a slow machine.
ISSUE_MS=$((T1 - T0))
MANY=$((100 * 1000 / (ISSUE_MS > 1 ? ISSUE_MS : 1)))
MANY=$((MANY > 50 ? 50 : MANY < 5 ? 5 : MANY))
expect_lt "... with many of them in flight at once (peak inflight=${INFL:-none}, resolves took ${ISSUE_MS} ms)" \
    "$MANY" "${INFL:-0}"
# Wait for the agent to count them completed (one bound for all, not an
# await of up to a minute each), then read each continuation.
need "the agent completes the calls of every acknowledged resolve" 90 \
    stat_at_least "$S" invocations.completed $((COMPLETED0 + 200 - resolve_failed))
T2=$(now_ms)
done_ok=0
for pq in "${IDS[@]}"; do
    run "$PMESH" --socket "$S" get "${pq##*:}"
    [ "$(json_get "$OUT" state)|$(json_get "$OUT" value)" = "resolved|v" ] && done_ok=$((done_ok + 1))
done
expect_eq "all 200 resolved" 200 "$done_ok"
expect_lt "... concurrently: well under 200 x 1 s (took $((T2 - T0)) ms)" $((T2 - T0)) 90000

# Placement from another agent: the HTTP function lives on agent 1, the
# chain is created on agent 2, which has no worker for it.
MPORT=$((PORT + 2))
"$PMESH" --socket "$S" status >/dev/null
kill -TERM "$A1"; wait_exit "$A1" 10
start_agent 1 --insecure --bind "tcp://127.0.0.1:$MPORT" --http-functions "reverse=$F/reverse"
S1=$AGENT_SOCK
start_agent 2 --insecure --bind "tcp://127.0.0.1:$((MPORT + 1))" --seed "tcp://127.0.0.1:$MPORT"
S2=$AGENT_SOCK
wait_for 10 sh -c "\"$PMESH\" --socket $S2 members --json | grep -q reverse" &&
    ok "gossip advertises the HTTP function to the other agent" ||
    not_ok "gossip advertises the HTTP function to the other agent"
p=$("$PMESH" --socket "$S2" create)
q=$("$PMESH" --socket "$S2" then "$p" reverse)
"$PMESH" --socket "$S2" resolve "$p" "placed"
run "$PMESH" --socket "$S2" await "$q" --timeout 10s
expect_eq "a chain on agent 2 runs the HTTP function placed on agent 1" "0 decalp" "$RC $OUT"

finish
