#!/usr/bin/env bash
# test_worker_restart.sh - clients and workers outlive their agent
# (proto/PROTOCOL.md, "Losing the agent"), with real pmeshd processes, the
# real `pmesh` CLI and a libpmesh C worker (build/bin/pmesh_chain).
#
# 1. Keep-alive from client_timeout: an agent with --client-timeout 200ms
#    (the smallest allowed) keeps an idle client's session for seconds: an
#    await on a pending promise is answered when another client resolves it
#    3 s later, and an idle worker stays registered.
# 2. SIGKILL and restart on the same data dir and socket, workers untouched:
#    - a C worker (function A) and two CLI workers (B, and S which is slow)
#      keep running, reconnect, register again and serve;
#    - a chain then(then(p, A), B) created before the kill completes when p
#      is resolved after the restart; a chain created after it completes too;
#    - an invocation of S running when the agent died (and until after the
#      restart): its result is dropped (the worker says so), the restarted
#      agent invokes it again, and its target settles once with the second
#      run's value;
#    - a client with awaits in flight (one blocking, one pipelined) gets
#      UNREACHABLE for both promptly, a call while no agent is there fails at
#      once, and the same pm_client_t works again after the restart;
#      `pmesh await` in flight exits 69 promptly.
#
#   BUILD=build tests/integration/test_worker_restart.sh
. "$(dirname "$0")/lib.sh"

CHAIN=$BIN/pmesh_chain
if [ ! -x "$CHAIN" ]; then
    echo "test_worker_restart.sh: no $CHAIN; build first (make BUILD=$BUILD)" >&2
    exit 1
fi
# How soon after the kill a client in flight must hear UNREACHABLE: the
# kernel closes the connection at once; the rest is room for a loaded box.
LOSS_BOUND_MS=3000

# fn_workers SOCK F: how many workers the agent at SOCK has for F.
fn_workers() {
    json_get "$("$PMESH" --socket "$1" status 2>/dev/null)" "functions.$2.workers"
}

# has_workers SOCK F N: the agent has N workers for F.
has_workers() {
    [ "$(fn_workers "$1" "$2")" = "$3" ]
}

# waiters_at_least SOCK N: the agent has at least N awaits open.
waiters_at_least() {
    local w
    w=$(json_get "$("$PMESH" --socket "$1" status 2>/dev/null)" clients.waiters)
    [[ $w =~ ^[0-9]+$ ]] && [ "$w" -ge "$2" ]
}

# ========================================== 1. pings follow client_timeout

start_agent 2 --client-timeout 200ms
S2=$AGENT_SOCK
start_worker w-idle idle --socket "$S2" -- cat
IDLE_PID=$WORKER_PID
run "$PMESH" --socket "$S2" create
LONG=$OUT
bg await-long "$PMESH" --socket "$S2" await "$LONG" --timeout 20s
AWAIT_LONG=$BG_PID
wait_for 5 waiters_at_least "$S2" 1 || true
expect_eq "client_timeout 200ms: the await is open" 1 \
    "$(json_get "$("$PMESH" --socket "$S2" status)" clients.waiters)"
# The point of the case is time passing: 3 s is 15 client timeouts.
sleep 3
run "$PMESH" --socket "$S2" resolve "$LONG" "late value"
expect_eq "... another client resolves the promise 3 s later" 0 "$RC"
wait_exit "$AWAIT_LONG" 10
expect_eq "... the idle client's await is still answered (its session was kept)" \
    "0|late value" "$RC|$(cat "$TMP/await-long.out")"
expect_eq "... an idle worker is still registered" 1 "$(fn_workers "$S2" idle)"
expect_no_match "... no session of a live client expired" "PM-CLIENT-EXPIRED|PM-WORKER-GONE" \
    "$(cat "$TMP/agent-2.log")"
kill -TERM "$IDLE_PID"

# ========================================== 2. SIGKILL and restart

D=$TMP/data
start_agent 1 --data-dir "$D"
A=$AGENT_PID
disown "$A" # its SIGKILL is the test's doing: no job notice
SOCK=$AGENT_SOCK

bg w-a "$CHAIN" worker --socket "$SOCK" --function A --append +A --concurrency 4
WA=$BG_PID
start_worker w-b B --socket "$SOCK" -- sh -c 'cat; printf +B'
WB=$WORKER_PID
# S records each run, so a re-invocation shows, and finishes only once the
# test has restarted the agent (the file $TMP/release exists), so its first
# run is surely in flight across the kill.
start_worker w-s S --socket "$SOCK" -- sh -c \
    'echo run >>"$0"; while [ ! -e "$1" ]; do sleep 0.05; done; cat; printf +S' \
    "$TMP/s.runs" "$TMP/release"
WS=$WORKER_PID
wait_for 10 has_workers "$SOCK" A 1 || true
expect_eq "C worker serves A" 1 "$(fn_workers "$SOCK" A)"

run "$PMESH" --socket "$SOCK" create
P=$OUT
run "$PMESH" --socket "$SOCK" then "$P" A
Q=$OUT
run "$PMESH" --socket "$SOCK" then "$Q" B
R=$OUT
expect_eq "chain then(then(p, A), B) created before the kill" 0 "$RC"

# An invocation of S in flight at the kill.
run "$PMESH" --socket "$SOCK" create
P2=$OUT
run "$PMESH" --socket "$SOCK" then "$P2" S
T2=$OUT
run "$PMESH" --socket "$SOCK" resolve "$P2" "y"
wait_for 10 test -s "$TMP/s.runs" || true
expect_eq "S is running when the agent is killed" 1 "$(wc -l <"$TMP/s.runs" 2>/dev/null || echo 0)"

# Clients in flight: the C client (blocking + pipelined await on p) and the CLI.
bg await-restart "$CHAIN" await-restart --socket "$SOCK" --id "$P" --wait-agent 30
AR=$BG_PID
wait_for 10 grep -q "waiting=1" "$TMP/await-restart.out" || true
bg await-cli "$PMESH" --socket "$SOCK" await "$P" --timeout 60s
AC=$BG_PID
wait_for 5 waiters_at_least "$SOCK" 3 || true
expect_eq "three awaits in flight on p at the kill" 3 \
    "$(json_get "$("$PMESH" --socket "$SOCK" status)" clients.waiters)"

KILL_MS=$(now_ms)
kill -KILL "$A"
wait_exit "$A" 5

wait_for 10 grep -q "call_while_away" "$TMP/await-restart.out" || true
AR_OUT=$(cat "$TMP/await-restart.out")
expect_match "blocking await in flight fails UNREACHABLE" "await_err=UNREACHABLE" "$AR_OUT"
AT=$(sed -n 's/.*await_err=[A-Z_]* at_ms=\([0-9]*\).*/\1/p' "$TMP/await-restart.out")
if [[ $AT =~ ^[0-9]+$ ]] && [ $((AT - KILL_MS)) -lt "$LOSS_BOUND_MS" ]; then
    ok "... within ${LOSS_BOUND_MS} ms of the kill ($((AT - KILL_MS)) ms)"
else
    not_ok "... within ${LOSS_BOUND_MS} ms of the kill" "kill at $KILL_MS, await ended at '$AT'"
fi
expect_match "pipelined await in flight: its result is UNREACHABLE" \
    "pipelined_await=UNREACHABLE" "$AR_OUT"
expect_match "... nothing more is owed, and pm_recv says UNREACHABLE" \
    "after_results=UNREACHABLE" "$AR_OUT"
expect_match "a call while no agent is there fails UNREACHABLE at once" \
    "call_while_away=UNREACHABLE elapsed_ms=[0-9]{1,3}($|[^0-9])" "$AR_OUT"
wait_exit "$AC" 10
expect_eq "pmesh await in flight exits 69 (UNREACHABLE)" 69 "$RC"
expect_lt "... promptly" "$(($(now_ms) - KILL_MS))" $((LOSS_BOUND_MS + 2000))

for w in "$WA:C worker A" "$WB:CLI worker B" "$WS:CLI worker S"; do
    if alive "${w%%:*}"; then ok "${w#*:} keeps running without an agent"; else
        not_ok "${w#*:} keeps running without an agent"; fi
done

start_agent 1 --data-dir "$D"
A=$AGENT_PID
disown "$A"
# S's first run ends now; its worker (all its slots busy until then) then
# reconnects.
touch "$TMP/release"

wait_exit "$AR" 20
expect_eq "the same pm_client_t works after the restart (status, create, resolve, await)" \
    "0|result=ok" "$RC|$(tail -n 1 "$TMP/await-restart.out")"
expect_match "... on a new session" "status_again=OK failed_tries=[0-9]+ session=[1-9]" \
    "$(cat "$TMP/await-restart.out")"

wait_for 10 has_workers "$SOCK" A 1 || true
wait_for 10 has_workers "$SOCK" B 1 || true
wait_for 10 has_workers "$SOCK" S 1 || true
expect_eq "workers registered again, once each (A B S)" "1 1 1" \
    "$(fn_workers "$SOCK" A) $(fn_workers "$SOCK" B) $(fn_workers "$SOCK" S)"
# (each says so when its pm_worker_next returns, a moment after registering)
wait_for 5 grep -q "reconnected" "$TMP/w-a.log" || true
wait_for 5 grep -q "reconnected" "$TMP/w-b.log" || true
expect_match "the C worker says it reconnected" "reconnected \(session [0-9]+\)" \
    "$(cat "$TMP/w-a.log")"
expect_match "the CLI worker says it reconnected" "reconnected to the agent at .*; serving B again" \
    "$(cat "$TMP/w-b.log")"

run "$PMESH" --socket "$SOCK" resolve "$P" "x"
expect_eq "p (created before the kill) resolves after the restart" 0 "$RC"
run "$PMESH" --socket "$SOCK" await "$R" --timeout 15s
expect_eq "the chain from before the kill completes through both workers" "0|x+A+B" "$RC|$OUT"

run "$PMESH" --socket "$SOCK" await "$T2" --timeout 15s
expect_eq "the invocation in flight at the kill: its target settles with the new run's value" \
    "0|y+S" "$RC|$OUT"
wait_for 10 grep -q "dropped the result" "$TMP/w-s.log" || true
expect_match "... the first run's result was dropped (its session had ended)" \
    "dropped the result of invocation .*: its session with the agent ended" "$(cat "$TMP/w-s.log")"
expect_eq "... the agent invoked it again: S ran twice" 2 "$(wc -l <"$TMP/s.runs")"
run "$PMESH" --socket "$SOCK" resolve "$T2" "other"
expect_eq "... and it settled once (another outcome is refused)" 1 "$RC"

run "$PMESH" --socket "$SOCK" create
P3=$OUT
run "$PMESH" --socket "$SOCK" then "$P3" A
run "$PMESH" --socket "$SOCK" then "$OUT" B
R3=$OUT
run "$PMESH" --socket "$SOCK" resolve "$P3" "z"
run "$PMESH" --socket "$SOCK" await "$R3" --timeout 15s
expect_eq "a chain created after the restart completes" "0|z+A+B" "$RC|$OUT"

kill -TERM "$WA"
wait_exit "$WA" 10
expect_eq "the C worker stops on SIGTERM (exit 0)" 0 "$RC"
expect_match "... having served A once per chain (the second after a restart it saw)" \
    "served=2 " \
    "$(cat "$TMP/w-a.out")"

finish
