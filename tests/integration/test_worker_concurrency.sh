#!/usr/bin/env bash
# test_worker_concurrency.sh - one libpmesh C worker process serves many
# invocations at once (pm_worker_new with concurrency N: it takes up to N
# with pm_worker_next and answers them in any order), with a real pmeshd and
# the C worker build/bin/pmesh_chain (--delay-ms holds each invocation, and
# answers a burst's later ones first).
#
# 1. N=8 slow invocations (1.5 s each) on one worker with concurrency 8: the
#    agent hands all 8 to it at once, they complete in about the time of one
#    (not 8 x 1.5 s), each target with its own input's result, and the worker
#    answered some before others that had come earlier (any order).
# 2. The agent holds a worker to its concurrency: 6 invocations on a worker
#    with concurrency 2 are never more than 2 in flight, and all complete.
# 3. A worker SIGKILLed with 4 invocations outstanding: its session ends,
#    the agent hands the 4 to another worker with attempt 2 (at-least-once,
#    proto/PROTOCOL.md "Workers"), and each target settles once, with the
#    second worker's result.
#
#   BUILD=build tests/integration/test_worker_concurrency.sh
. "$(dirname "$0")/lib.sh"

CHAIN=$BIN/pmesh_chain
if [ ! -x "$CHAIN" ]; then
    echo "test_worker_concurrency.sh: no $CHAIN; build first (make BUILD=$BUILD)" >&2
    exit 1
fi

# fn_workers SOCK F: how many workers the agent at SOCK has for F.
fn_workers() {
    json_get "$("$PMESH" --socket "$1" status 2>/dev/null)" "functions.$2.workers"
}
has_workers() { [ "$(fn_workers "$1" "$2")" = "$3" ]; }
inflight_is() { [ "$(agent_stat "$1" invocations.inflight)" = "$2" ]; }

# chain_on SOCK FN N PREFIX: N promises p_i with then(p_i, FN); prints
# "p_i q_i" lines to $TMP/PREFIX.ids.
chain_on() {
    local sock=$1 fn=$2 n=$3 prefix=$4 p q
    : >"$TMP/$prefix.ids"
    for i in $(seq "$n"); do
        p=$("$PMESH" --socket "$sock" create) || return 1
        q=$("$PMESH" --socket "$sock" "then" "$p" "$fn") || return 1
        echo "$p $q" >>"$TMP/$prefix.ids"
    done
}

start_agent 1 --data-dir "$TMP/data" --client-timeout 500ms
SOCK=$AGENT_SOCK

# ========================================== 1. N slow invocations at once
N=8
DELAY_MS=1500
bg w-par "$CHAIN" worker --socket "$SOCK" --function slow --concurrency "$N" \
    --delay-ms "$DELAY_MS" --append +W -v
WPAR=$BG_PID
need "the C worker registers slow" 10 has_workers "$SOCK" slow 1
chain_on "$SOCK" slow "$N" par
T0=$(now_ms)
# The N resolves at once: the worker holds a later arrival up to
# DELAY_MS/(2N) less (pmesh_chain.c), so arrivals closer than that are answered
# out of order; one CLI process after another can be slower than that apart
# (a sanitized build on a slow machine: ~110 ms a start).
i=0
RESOLVERS=()
while read -r p _; do
    i=$((i + 1))
    "$PMESH" --socket "$SOCK" resolve "$p" "in$i" >/dev/null &
    RESOLVERS+=($!)
    echo "$!" >>"$CHILD_PIDS"
done <"$TMP/par.ids"
wait "${RESOLVERS[@]}"
need "the agent hands all $N to the one worker at once" 5 inflight_is "$SOCK" "$N"
expect_eq "... $N invocations in flight on one worker process" "$N" \
    "$(agent_stat "$SOCK" invocations.inflight)"
good=0
i=0
while read -r _ q; do
    i=$((i + 1))
    run "$PMESH" --socket "$SOCK" await "$q" --timeout 20s
    [ "$RC|$OUT" = "0|in$i+W" ] && good=$((good + 1))
done <"$TMP/par.ids"
ELAPSED=$(($(now_ms) - T0))
expect_eq "all $N targets resolve, each with its own input's result" "$N" "$good"
# One at a time would take N x DELAY_MS (12 s); at once, one DELAY_MS and
# the round trips (room for a loaded machine).
expect_lt "... in about the time of one (${DELAY_MS} ms each, $N at once)" "$ELAPSED" \
    $((DELAY_MS * 2 + 1000))
kill -TERM "$WPAR"
wait_exit "$WPAR" 10
expect_eq "the worker stops on SIGTERM (exit 0)" 0 "$RC"
expect_match "... served all $N, answering some before earlier ones (any order)" \
    "^served=$N dropped=0 out_of_order=[1-9]" "$(cat "$TMP/w-par.out")"

# ========================================== 2. held to its concurrency
bg w-two "$CHAIN" worker --socket "$SOCK" --function two --concurrency 2 --delay-ms 400 \
    --append +2
WTWO=$BG_PID
need "the concurrency-2 worker registers" 10 has_workers "$SOCK" two 1
chain_on "$SOCK" two 6 two
while read -r p _; do "$PMESH" --socket "$SOCK" resolve "$p" x >/dev/null; done <"$TMP/two.ids"
MAXIN=0
DEADLINE=$(($(now_ms) + 15000))
done_n=0
while [ "$(now_ms)" -lt "$DEADLINE" ]; do
    v=$(agent_stat "$SOCK" invocations.inflight)
    [[ $v =~ ^[0-9]+$ ]] && [ "$v" -gt "$MAXIN" ] && MAXIN=$v
    done_n=0
    while read -r _ q; do promise_state_is "$SOCK" "$q" resolved && done_n=$((done_n + 1)); done <"$TMP/two.ids"
    [ "$done_n" = 6 ] && break
    sleep 0.05
done
expect_eq "6 invocations on a concurrency-2 worker all complete" 6 "$done_n"
expect_eq "... never more than 2 in flight at once (and 2 at some point)" 2 "$MAXIN"
kill -TERM "$WTWO"
wait_exit "$WTWO" 10

# ========================================== 3. SIGKILL with several outstanding
bg w-doomed "$CHAIN" worker --socket "$SOCK" --function k --concurrency 4 --delay-ms 60000 \
    --append +DOOMED -v
WDOOM=$BG_PID
disown "$WDOOM" # its SIGKILL is the test's doing: no job notice
need "the doomed worker registers" 10 has_workers "$SOCK" k 1
chain_on "$SOCK" k 4 kill
while read -r p _; do "$PMESH" --socket "$SOCK" resolve "$p" v >/dev/null; done <"$TMP/kill.ids"
need "the doomed worker holds all 4" 10 inflight_is "$SOCK" 4
expect_eq "4 invocations outstanding on the worker before the kill" 4 \
    "$(grep -c "holding .* (attempt 1)" "$TMP/w-doomed.log")"
RETRIED0=$(agent_stat "$SOCK" invocations.retried)
kill -KILL "$WDOOM"
need "the agent sees the worker gone" 10 has_workers "$SOCK" k 0
bg w-heir "$CHAIN" worker --socket "$SOCK" --function k --concurrency 4 --append +HEIR -v
WHEIR=$BG_PID
good=0
while read -r _ q; do
    run "$PMESH" --socket "$SOCK" await "$q" --timeout 20s
    [ "$RC|$OUT" = "0|v+HEIR" ] && good=$((good + 1))
done <"$TMP/kill.ids"
expect_eq "the 4 outstanding at the kill settle with the next worker's result" 4 "$good"
expect_eq "... handed out again: 4 retried" 4 \
    "$(($(agent_stat "$SOCK" invocations.retried) - RETRIED0))"
# The heir is a plain worker (no -v lines per answer); the agent says which
# attempt it handed out in the invocation, which the doomed one logged as 1.
run "$PMESH" --socket "$SOCK" resolve "$(head -1 "$TMP/kill.ids" | cut -d' ' -f2)" other
expect_eq "... and each settled once (another outcome is refused)" 1 "$RC"
kill -TERM "$WHEIR"
wait_exit "$WHEIR" 10
expect_match "the heir served exactly those 4" "^served=4 dropped=0" "$(cat "$TMP/w-heir.out")"

finish
