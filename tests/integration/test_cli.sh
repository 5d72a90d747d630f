#!/usr/bin/env bash
# test_cli.sh - the `pmesh` command's contract, end to end against a real
# pmeshd: output shapes, exit codes, settle semantics, timeouts, heartbeats,
# idempotency keys, labels and paging, await timeouts, then-chains through
# real `pmesh worker` processes (including one killed mid-invocation), usage
# and unreachable-agent errors, and the agent's clean shutdown.
#
#   BUILD=build tests/integration/test_cli.sh
. "$(dirname "$0")/lib.sh"

start_agent 1
export PMESH_SOCKET=$AGENT_SOCK

# ---- basics: --help, --version, status ----------------------------------------

run "$PMESH" --help
expect_eq "--help exits 0" 0 "$RC"
expect_match "--help prints usage on stdout" "usage: pmesh" "$OUT"

run "$PMESH" --version
expect_eq "--version exits 0" 0 "$RC"
expect_match "--version prints the version" "^pmesh [0-9]+\.[0-9]+\.[0-9]+$" "$OUT"

run "$PMESH" status
expect_eq "status exits 0" 0 "$RC"
expect_eq "status is one line" 1 "$(printf '%s\n' "$OUT" | wc -l)"
expect_eq "status names the node" "test-1" "$(json_get "$OUT" node)"
expect_match "status has the version" "^[0-9]+\.[0-9]+\.[0-9]+$" "$(json_get "$OUT" version)"
expect_match "status has uptime_ms" "^[0-9]+$" "$(json_get "$OUT" uptime_ms)"
expect_match "status counts promises" "^[0-9]+$" "$(json_get "$OUT" promises.total)"
expect_match "status counts pending promises" "^[0-9]+$" "$(json_get "$OUT" promises.pending)"
expect_ne "status has an id space" "<absent>" "$(json_get "$OUT" id_space)"

# ---- create / get / resolve / await ----------------------------------------------

run "$PMESH" create
expect_eq "create exits 0" 0 "$RC"
P=$OUT
expect_match "create prints one id" "^[^[:space:]]+$" "$P"
expect_eq "create prints nothing on stderr" "" "$ERR"

run "$PMESH" get "$P"
expect_eq "get exits 0" 0 "$RC"
expect_eq "get is one line" 1 "$(printf '%s\n' "$OUT" | wc -l)"
expect_eq "get: id" "$P" "$(json_get "$OUT" id)"
expect_eq "get: state pending" "pending" "$(json_get "$OUT" state)"
expect_match "get: created_ms" "^[0-9]{12,}$" "$(json_get "$OUT" created_ms)"
expect_eq "get: no value while pending" "<absent>" "$(json_get "$OUT" value)"
expect_eq "get: no settled_ms while pending" "<absent>" "$(json_get "$OUT" settled_ms)"
expect_eq "get: no timeout_at_ms without timeout" "<absent>" "$(json_get "$OUT" timeout_at_ms)"

run "$PMESH" resolve "$P" "hello world"
expect_eq "resolve exits 0" 0 "$RC"
expect_eq "resolve prints nothing" "" "$OUT$ERR"

run "$PMESH" get "$P"
expect_eq "get after resolve: state" "resolved" "$(json_get "$OUT" state)"
expect_eq "get after resolve: value" "hello world" "$(json_get "$OUT" value)"
expect_match "get after resolve: settled_ms" "^[0-9]{12,}$" "$(json_get "$OUT" settled_ms)"

run "$PMESH" await "$P"
expect_eq "await resolved exits 0" 0 "$RC"
printf 'hello world' >"$TMP/expect.txt"
check "await prints the value with no added newline" cmp "$TMP/expect.txt" "$TMP/run.out"

# binary bytes through stdin, back out through await, base64 in get
printf '\x00\x01\x02\xff\xfe binary\n\x00' >"$TMP/bin.in"
run "$PMESH" create
B=$OUT
run_in "$TMP/bin.in" "$PMESH" resolve "$B"
expect_eq "resolve from stdin (binary) exits 0" 0 "$RC"
run "$PMESH" await "$B"
expect_eq "await binary exits 0" 0 "$RC"
check "await returns the binary value byte for byte" cmp "$TMP/bin.in" "$TMP/run.out"
run "$PMESH" get "$B"
expect_eq "get: binary value as value_b64" "$(base64 -w0 "$TMP/bin.in")" \
    "$(json_get "$OUT" value_b64)"
expect_eq "get: no value field for binary" "<absent>" "$(json_get "$OUT" value)"

# UTF-8 text stays text; a trailing newline from stdin is kept
printf 'h\xc3\xa9llo \xe2\x9c\x93\n' >"$TMP/utf8.in"
run "$PMESH" create
U=$OUT
run_in "$TMP/utf8.in" "$PMESH" resolve "$U"
run "$PMESH" get "$U"
expect_eq "get: UTF-8 value as a JSON string" "$(printf 'h\xc3\xa9llo \xe2\x9c\x93\n')" \
    "$(json_get "$OUT" value)"
run "$PMESH" await "$U"
check "await returns the UTF-8 value with its newline" cmp "$TMP/utf8.in" "$TMP/run.out"

# an empty value is a value
run "$PMESH" create
E=$OUT
run "$PMESH" resolve "$E" ""
expect_eq "resolve with empty value exits 0" 0 "$RC"
run "$PMESH" await "$E"
expect_eq "await empty value exits 0" 0 "$RC"
check "await empty value prints nothing" test ! -s "$TMP/run.out"

# a value that starts with "-" goes after "--"
run "$PMESH" create
D=$OUT
run "$PMESH" resolve "$D" -- "-dash value"
expect_eq "resolve ID -- VALUE exits 0" 0 "$RC"
run "$PMESH" await "$D"
expect_eq "resolve ID -- VALUE keeps the dash" "-dash value" "$OUT"

# ---- reject / cancel ---------------------------------------------------------------

run "$PMESH" create
R=$OUT
run "$PMESH" reject "$R" "the reason"
expect_eq "reject exits 0" 0 "$RC"
run "$PMESH" await "$R"
expect_eq "await rejected exits 1" 1 "$RC"
expect_eq "await rejected: nothing on stdout" "" "$OUT"
expect_eq "await rejected: STATE: reason on stderr" "REJECTED: the reason" "$ERR"
run "$PMESH" get "$R"
expect_eq "get rejected: state" "rejected" "$(json_get "$OUT" state)"
expect_eq "get rejected: reason" "the reason" "$(json_get "$OUT" reason)"

run "$PMESH" create
C=$OUT
run "$PMESH" cancel "$C"
expect_eq "cancel exits 0" 0 "$RC"
run "$PMESH" await "$C"
expect_eq "await canceled exits 1" 1 "$RC"
expect_match "await canceled: CANCELED on stderr" "^CANCELED" "$ERR"
run "$PMESH" get "$C"
expect_eq "get canceled: state" "canceled" "$(json_get "$OUT" state)"

# ---- settle once ------------------------------------------------------------------

run "$PMESH" resolve "$P" "hello world"
expect_eq "identical resolve again is idempotent (exit 0)" 0 "$RC"
run "$PMESH" resolve "$P" "something else"
expect_eq "different resolve exits 1" 1 "$RC"
expect_match "different resolve: ALREADY_SETTLED" "^pmesh: ALREADY_SETTLED: " "$ERR"
run "$PMESH" reject "$P" "nope"
expect_eq "reject of a resolved promise exits 1" 1 "$RC"
expect_match "reject of a resolved promise: ALREADY_SETTLED" "^pmesh: ALREADY_SETTLED: " "$ERR"
run "$PMESH" cancel "$P"
expect_eq "cancel of a resolved promise exits 1" 1 "$RC"
run "$PMESH" get "$P"
expect_eq "stored value unchanged after refused settles" "hello world" "$(json_get "$OUT" value)"
expect_eq "state unchanged after refused settles" "resolved" "$(json_get "$OUT" state)"
run "$PMESH" reject "$R" "the reason"
expect_eq "identical reject again is idempotent (exit 0)" 0 "$RC"
run "$PMESH" reject "$R" "another reason"
expect_eq "reject with another reason exits 1" 1 "$RC"
run "$PMESH" cancel "$C"
expect_eq "cancel again is idempotent (exit 0)" 0 "$RC"

# ---- NOT_FOUND ----------------------------------------------------------------------

MISSING=${P}0nosuch
run "$PMESH" get "$MISSING"
expect_eq "get unknown id exits 1" 1 "$RC"
expect_match "get unknown id: NOT_FOUND" "^pmesh: NOT_FOUND: " "$ERR"
run "$PMESH" resolve "$MISSING" x
expect_eq "resolve unknown id exits 1" 1 "$RC"
expect_match "resolve unknown id: NOT_FOUND" "^pmesh: NOT_FOUND: " "$ERR"
run "$PMESH" await "$MISSING"
expect_eq "await unknown id exits 1" 1 "$RC"
expect_match "await unknown id: NOT_FOUND" "^pmesh: NOT_FOUND: " "$ERR"
run "$PMESH" heartbeat "$MISSING"
expect_eq "heartbeat unknown id exits 1" 1 "$RC"

# ---- timeout --------------------------------------------------------------------------

W0=$(agent_stat "$AGENT_SOCK" clients.waiters)
run "$PMESH" create --timeout 1s
T=$OUT
run "$PMESH" get "$T"
expect_eq "timeout: pending at first" "pending" "$(json_get "$OUT" state)"
T_AT=$(json_get "$OUT" timeout_at_ms)
expect_match "timeout: timeout_at_ms set" "^[0-9]{12,}$" "$T_AT"
bg await-timeout "$PMESH" await "$T"
AWAIT_T=$BG_PID
need_waiters "$AGENT_SOCK" $((W0 + 1)) # the await is held before the deadline
need "timeout: the promise times out" 10 promise_state_is "$AGENT_SOCK" "$T" timedout
run "$PMESH" get "$T"
expect_eq "timeout: timedout after its timeout" "timedout" "$(json_get "$OUT" state)"
T_SETTLED=$(json_get "$OUT" settled_ms)
if [[ $T_SETTLED =~ ^[0-9]+$ ]] && [[ $T_AT =~ ^[0-9]+$ ]] && [ "$T_SETTLED" -ge "$T_AT" ]; then
    ok "timeout: not before its timeout_at_ms ($((T_SETTLED - T_AT)) ms after it)"
else
    not_ok "timeout: not before its timeout_at_ms" "timeout_at_ms $T_AT, settled_ms $T_SETTLED"
fi
run "$PMESH" resolve "$T" late
expect_eq "resolve after timeout exits 1" 1 "$RC"
expect_match "resolve after timeout: TIMED_OUT" "^pmesh: TIMED_OUT: " "$ERR"
wait_exit "$AWAIT_T" 5
expect_eq "await across the timeout exits 1" 1 "$RC"
expect_match "await across the timeout: TIMEDOUT on stderr" "^TIMEDOUT" \
    "$(cat "$TMP/await-timeout.log")"

# ---- heartbeat ---------------------------------------------------------------------------

# An interval well above the rhythm below: a CLI call under a sanitizer on a
# loaded machine can take half a second (700 ms timed out there once).
run "$PMESH" create --heartbeat 1500ms
H=$OUT
run "$PMESH" get "$H"
expect_eq "heartbeat: heartbeat_ms reported" 1500 "$(json_get "$OUT" heartbeat_ms)"
expect_match "heartbeat: heartbeat_at_ms reported" "^[0-9]{12,}$" \
    "$(json_get "$OUT" heartbeat_at_ms)"
hb_fail=0
start=$(now_ms)
# Heartbeats every 200 ms for 3.5 s, past two intervals: the rhythm is the
# behaviour under test.
while [ $(($(now_ms) - start)) -lt 3500 ]; do
    "$PMESH" heartbeat "$H" || hb_fail=1
    sleep 0.2
done
expect_eq "heartbeats exit 0" 0 "$hb_fail"
run "$PMESH" get "$H"
expect_eq "heartbeats keep the promise pending past its interval" "pending" \
    "$(json_get "$OUT" state)"
HB_AT=$(json_get "$OUT" heartbeat_at_ms)
need "heartbeat: the promise times out once they stop" 10 promise_state_is "$AGENT_SOCK" "$H" timedout
run "$PMESH" get "$H"
expect_eq "missed heartbeats time the promise out" "timedout" "$(json_get "$OUT" state)"
H_SETTLED=$(json_get "$OUT" settled_ms)
if [[ $H_SETTLED =~ ^[0-9]+$ ]] && [[ $HB_AT =~ ^[0-9]+$ ]] && [ "$H_SETTLED" -ge "$HB_AT" ]; then
    ok "... not before the last heartbeat's deadline ($((H_SETTLED - HB_AT)) ms after it)"
else
    not_ok "... not before the last heartbeat's deadline" "heartbeat_at_ms $HB_AT, settled_ms $H_SETTLED"
fi
run "$PMESH" heartbeat "$H"
expect_ne "heartbeat on a timed-out promise fails" 0 "$RC"

# ---- idempotency key -------------------------------------------------------------------

run "$PMESH" create --key order-17
K1=$OUT
run "$PMESH" create --key order-17
expect_eq "same idempotency key: exit 0" 0 "$RC"
expect_eq "same idempotency key returns the same id" "$K1" "$OUT"
run "$PMESH" create --key=order-18
expect_ne "another key gives another id" "$K1" "$OUT"
run "$PMESH" get "$K1"
expect_eq "get shows the idempotency key" "order-17" "$(json_get "$OUT" idempotency_key)"

# ---- labels, list filters, paging --------------------------------------------------------

run "$PMESH" create --label team=blue --label env=prod
L1=$OUT
run "$PMESH" create --label team=red
L2=$OUT
run "$PMESH" get "$L1"
expect_eq "get: label team" "blue" "$(json_get "$OUT" labels.team)"
expect_eq "get: label env" "prod" "$(json_get "$OUT" labels.env)"

ids_of() { # the ids in list output, one per line, sorted
    python3 -c '
import json, sys
for line in sys.stdin:
    o = json.loads(line)
    if "id" in o: print(o["id"])
' | sort
}

run "$PMESH" list --label team=blue
expect_eq "list --label exits 0" 0 "$RC"
expect_eq "list --label finds exactly the labelled promise" "$L1" "$(printf '%s\n' "$OUT" | ids_of)"
run "$PMESH" list --label team=red --state pending
expect_eq "list --label --state" "$L2" "$(printf '%s\n' "$OUT" | ids_of)"
run "$PMESH" list --label team=red --state resolved
expect_eq "list --state filters out" "" "$OUT"
run "$PMESH" list --state canceled
expect_eq "list --state canceled finds the canceled promise" "$C" "$(printf '%s\n' "$OUT" | ids_of)"
run "$PMESH" list --prefix "$P"
listed=$(printf '%s\n' "$OUT" | ids_of)
expect_match "list --prefix ID finds that promise" "(^|$'\n')$P($'\n'|$)" "$listed"
expect_eq "list --prefix lists only ids with that prefix" "" \
    "$(printf '%s\n' "$listed" | grep -v "^$P" || true)"
run "$PMESH" list --prefix "no-such-prefix-"
expect_eq "list --prefix with no match prints nothing" "" "$OUT"
run "$PMESH" list --state resolved --limit 1000
first=$(printf '%s\n' "$OUT" | head -n 1)
expect_eq "list lines are promise JSON" "resolved" "$(json_get "$first" state)"

expected_ids=()
for i in 1 2 3 4 5; do
    run "$PMESH" create --label batch=paging
    expected_ids+=("$OUT")
done
seen=""
cursor=""
pages=0
while :; do
    if [ -n "$cursor" ]; then
        run "$PMESH" list --label batch=paging --limit 2 --cursor "$cursor"
    else
        run "$PMESH" list --label batch=paging --limit 2
    fi
    pages=$((pages + 1))
    [ "$RC" = 0 ] || break
    n=$(printf '%s\n' "$OUT" | ids_of | grep -c . || true)
    [ "$n" -le 2 ] || { not_ok "a page holds at most --limit promises" "got $n"; break; }
    seen+=$(printf '%s\n' "$OUT" | ids_of)$'\n'
    last=$(printf '%s\n' "$OUT" | tail -n 1)
    cursor=$(json_get "$last" cursor)
    [ "$cursor" != "<absent>" ] || break
    [ "$pages" -lt 10 ] || break
done
expect_eq "paging with --cursor visits every promise once" \
    "$(printf '%s\n' "${expected_ids[@]}" | sort)" "$(printf '%s' "$seen" | grep . | sort)"
expect_eq "paging 5 promises by 2 takes 3 pages" 3 "$pages"

# ---- await --timeout ---------------------------------------------------------------------

run "$PMESH" create
W=$OUT
t0=$(now_ms)
run "$PMESH" await "$W" --timeout 300ms
elapsed=$(($(now_ms) - t0))
expect_eq "await --timeout on a pending promise exits 2" 2 "$RC"
expect_eq "await --timeout prints nothing on stdout" "" "$OUT"
expect_lt "await --timeout waited at least its timeout" 299 "$elapsed"
expect_lt "await --timeout returned promptly" "$elapsed" 3000
W0=$(agent_stat "$AGENT_SOCK" clients.waiters)
bg await-later "$PMESH" await --timeout 10s "$W"
AWAIT_W=$BG_PID
need_waiters "$AGENT_SOCK" $((W0 + 1))
"$PMESH" resolve "$W" later
wait_exit "$AWAIT_W" 5
expect_eq "await --timeout returns 0 when resolved in time" 0 "$RC"
expect_eq "await --timeout prints the value" "later" "$(cat "$TMP/await-later.out")"

# ---- --socket and option placement ---------------------------------------------------------

run env -u PMESH_SOCKET "$PMESH" get "$P" --socket "$AGENT_SOCK"
expect_eq "--socket after the arguments works" "$P" "$(json_get "$OUT" id)"
run env -u PMESH_SOCKET "$PMESH" --socket "$AGENT_SOCK" get "$P"
expect_eq "--socket before the command works" "$P" "$(json_get "$OUT" id)"
run env PMESH_SOCKET="$TMP/nowhere.sock" "$PMESH" --socket "$AGENT_SOCK" get "$P"
expect_eq "--socket wins over \$PMESH_SOCKET" 0 "$RC"

# ---- then-chains through real workers -----------------------------------------------------

start_worker worker-upper upper -- tr a-z A-Z
UPPER_PID=$WORKER_PID
start_worker worker-exclaim exclaim -- sh -c 'cat; printf !'
EXCLAIM_PID=$WORKER_PID

run "$PMESH" create
S=$OUT
run "$PMESH" then "$S" upper
expect_eq "then exits 0" 0 "$RC"
S1=$OUT
expect_match "then prints the new id" "^[^[:space:]]+$" "$S1"
expect_ne "then's id is a new promise" "$S" "$S1"
run "$PMESH" then "$S1" exclaim --timeout 30s
S2=$OUT
run "$PMESH" get "$S2"
expect_eq "chained promise is pending before its source settles" "pending" \
    "$(json_get "$OUT" state)"
run "$PMESH" resolve "$S" "hello chain"
run "$PMESH" await "$S2" --timeout 20s
expect_eq "await end of chain exits 0" 0 "$RC"
expect_eq "chain upper -> exclaim" "HELLO CHAIN!" "$OUT"
run "$PMESH" await "$S1" --timeout 5s
expect_eq "middle of chain holds upper's result" "HELLO CHAIN" "$OUT"

# then on a promise that is already resolved
run "$PMESH" then "$P" upper
run "$PMESH" await "$OUT" --timeout 20s
expect_eq "then on an already resolved promise" "HELLO WORLD" "$OUT"

# the child's environment
start_worker worker-env envcheck -- \
    sh -c 'printf "%s|%s|%s|%s" "$PMESH_FUNCTION" "$PMESH_TARGET_ID" \
        "${PMESH_INVOCATION_ID:+set}" "$(cat)"'
ENV_PID=$WORKER_PID
run "$PMESH" create
V=$OUT
run "$PMESH" then "$V" envcheck
V1=$OUT
"$PMESH" resolve "$V" input
run "$PMESH" await "$V1" --timeout 20s
expect_eq "worker child gets PMESH_FUNCTION, PMESH_TARGET_ID, PMESH_INVOCATION_ID, stdin" \
    "envcheck|$V1|set|input" "$OUT"

# big input and output through the worker's pipes (well over a pipe buffer)
head -c 300000 /dev/urandom | base64 -w 0 >"$TMP/big.in"
run "$PMESH" create
G=$OUT
run "$PMESH" then "$G" exclaim
G1=$OUT
run_in "$TMP/big.in" "$PMESH" resolve "$G"
expect_eq "resolve a 400 KB value from stdin" 0 "$RC"
run "$PMESH" await "$G1" --timeout 20s
expect_eq "big value through a worker: exit 0" 0 "$RC"
{ cat "$TMP/big.in"; printf '!'; } >"$TMP/big.expect"
check "big value through a worker comes back intact" cmp "$TMP/big.expect" "$TMP/run.out"

# one worker, several functions; the child learns which from PMESH_FUNCTION
start_worker worker-multi up2,down2 -- \
    sh -c 'case $PMESH_FUNCTION in up2) tr a-z A-Z ;; down2) tr A-Z a-z ;; esac'
MULTI_PID=$WORKER_PID
run "$PMESH" create
M=$OUT
run "$PMESH" then "$M" up2
M1=$OUT
run "$PMESH" then "$M" down2
M2=$OUT
"$PMESH" resolve "$M" "MiXeD"
run "$PMESH" await "$M1" --timeout 20s
expect_eq "worker serving a function list: first function" "MIXED" "$OUT"
run "$PMESH" await "$M2" --timeout 20s
expect_eq "worker serving a function list: second function" "mixed" "$OUT"

# a failing command rejects with its stderr as the reason
start_worker worker-fail failing -- sh -c 'cat >/dev/null; echo "  boom: bad input  " >&2; exit 3'
FAIL_PID=$WORKER_PID
start_worker worker-quiet quietfail -- sh -c 'exit 7'
QUIET_PID=$WORKER_PID
run "$PMESH" create
F=$OUT
run "$PMESH" then "$F" failing
F1=$OUT
run "$PMESH" then "$F" quietfail
F2=$OUT
"$PMESH" resolve "$F" whatever
run "$PMESH" await "$F1" --timeout 20s
expect_eq "failing worker command: await exits 1" 1 "$RC"
expect_eq "failing worker command: stderr is the reason (trimmed)" \
    "REJECTED: boom: bad input" "$ERR"
run "$PMESH" get "$F1"
expect_eq "failing worker command: rejected" "rejected" "$(json_get "$OUT" state)"
expect_eq "failing worker command: reason" "boom: bad input" "$(json_get "$OUT" reason)"
run "$PMESH" await "$F2" --timeout 20s
expect_eq "silent failure: await exits 1" 1 "$RC"
expect_eq "silent failure: reason is the exit status" "REJECTED: exit status 7" "$ERR"

# a rejected source rejects the chain without running the function
start_worker worker-spy spy -- sh -c "echo called >>'$TMP/spy.calls'; cat"
SPY_PID=$WORKER_PID
run "$PMESH" create
J=$OUT
run "$PMESH" then "$J" spy
J1=$OUT
INVOKED0=$(agent_stat "$AGENT_SOCK" invocations.invoked)
"$PMESH" reject "$J" "source failed"
run "$PMESH" await "$J1" --timeout 20s
expect_eq "rejected source: chain await exits 1" 1 "$RC"
expect_match "rejected source: chain is rejected" "^REJECTED" "$ERR"
# The agent rejects the chain in the step that rejects its source: had it
# made an invocation, its count would show it by now.
expect_eq "rejected source: no invocation made (invocations.invoked)" "$INVOKED0" \
    "$(agent_stat "$AGENT_SOCK" invocations.invoked)"
check "rejected source: the function never ran" test ! -e "$TMP/spy.calls"

# a worker killed mid-invocation: another worker completes it
SLOW_CMD="echo \$\$ >>'$CHILD_PIDS'; touch '$TMP/slow.started'; sleep 1; tr a-z A-Z"
start_worker worker-slow-a slow -- sh -c "$SLOW_CMD"
SLOW_A=$WORKER_PID
run "$PMESH" create
Q=$OUT
run "$PMESH" then "$Q" slow
Q1=$OUT
"$PMESH" resolve "$Q" "second try"
if wait_for 10 test -e "$TMP/slow.started"; then
    ok "slow invocation started on the first worker"
else
    not_ok "slow invocation started on the first worker"
fi
kill -KILL "$SLOW_A"
wait_exit "$SLOW_A" 5
start_worker worker-slow-b slow -- sh -c "$SLOW_CMD"
SLOW_B=$WORKER_PID
run "$PMESH" await "$Q1" --timeout 25s
expect_eq "invocation of a killed worker is completed by another: exit 0" 0 "$RC"
expect_eq "invocation of a killed worker is completed by another: value" "SECOND TRY" "$OUT"
expect_match "second worker ran the invocation" "slow .* ok" "$(cat "$TMP/worker-slow-b.log")"

# concurrency: three slow invocations at once on one worker
start_worker worker-par par --concurrency 3 -- sh -c "echo \$\$ >>'$CHILD_PIDS'; sleep 1; cat"
PAR_PID=$WORKER_PID
run "$PMESH" create
X=$OUT
par_ids=()
for i in 1 2 3; do
    run "$PMESH" then "$X" par
    par_ids+=("$OUT")
done
t0=$(now_ms)
"$PMESH" resolve "$X" p
par_ok=0
for id in "${par_ids[@]}"; do
    run "$PMESH" await "$id" --timeout 20s
    [ "$RC" = 0 ] && [ "$OUT" = p ] && par_ok=$((par_ok + 1))
done
elapsed=$(($(now_ms) - t0))
expect_eq "--concurrency 3: all three complete" 3 "$par_ok"
# at once: all three started before the first one finished
expect_eq "--concurrency 3: they ran at once" 3 \
    "$(sed -n '2,4p' "$TMP/worker-par.log" | grep -c ' started ' || true)"
expect_lt "--concurrency 3: in about one run's time" "$elapsed" 5000

# SIGTERM to a worker: it finishes what it runs, then exits 0
run "$PMESH" create
Y=$OUT
run "$PMESH" then "$Y" par
Y1=$OUT
started_before=$(grep -c ' started ' "$TMP/worker-par.log" || true)
more_started() { [ "$(grep -c ' started ' "$TMP/worker-par.log" || true)" -gt "$started_before" ]; }
"$PMESH" resolve "$Y" graceful
need "the invocation runs on the worker" 10 more_started
kill -TERM "$PAR_PID"
wait_exit "$PAR_PID" 10
expect_eq "worker exits 0 on SIGTERM" 0 "$RC"
run "$PMESH" await "$Y1" --timeout 5s
expect_eq "worker finished its in-flight invocation before exiting" "graceful" "$OUT"

# SIGINT too
kill -INT "$SPY_PID"
wait_exit "$SPY_PID" 10
expect_eq "worker exits 0 on SIGINT" 0 "$RC"

# a worker command that cannot be run rejects with a reason
start_worker worker-nocmd nocmd -- /nonexistent/command
run "$PMESH" create
N=$OUT
run "$PMESH" then "$N" nocmd
N1=$OUT
"$PMESH" resolve "$N" x
run "$PMESH" await "$N1" --timeout 20s
expect_eq "unrunnable worker command: await exits 1" 1 "$RC"
expect_match "unrunnable worker command: reason says why" "/nonexistent/command" "$ERR"

# ---- usage errors: exit 64 -------------------------------------------------------------------

usage_case() { # NAME ARGS...
    local name=$1
    shift
    run "$PMESH" "$@"
    if [ "$RC" = 64 ] && [[ $ERR == *usage* ]] && [ -z "$OUT" ]; then
        ok "usage error: $name"
    else
        not_ok "usage error: $name" "pmesh $*" "exit $RC (want 64)" "stderr: $ERR" "stdout: $OUT"
    fi
}
usage_case "no command"
usage_case "unknown command" frobnicate
usage_case "unknown option" create --bogus
usage_case "unknown global option" --bogus status
usage_case "bad duration" create --timeout soon
usage_case "option without value" create --timeout
usage_case "bad label" create --label novalue
usage_case "resolve without id" resolve
usage_case "get with extra argument" get "$P" extra
usage_case "await bad timeout" await "$P" --timeout xyz
usage_case "then without function" then "$P"
usage_case "list bad state" list --state sideways
usage_case "list bad limit" list --limit 0
usage_case "list two labels" list --label a=1 --label b=2
usage_case "worker without command" worker upper
usage_case "worker bad concurrency" worker upper --concurrency 0 -- cat
usage_case "--socket without path" --socket

# ---- unreachable agent: exit 69 ----------------------------------------------------------------

t0=$(now_ms)
run "$PMESH" --socket "$TMP/nowhere.sock" status
expect_eq "unreachable agent: status exits 69" 69 "$RC"
expect_match "unreachable agent: says UNREACHABLE" "UNREACHABLE" "$ERR"
expect_lt "unreachable agent: gives up within 10 s" "$(($(now_ms) - t0))" 10000
run "$PMESH" --socket "$TMP/nowhere.sock" create
expect_eq "unreachable agent: create exits 69" 69 "$RC"
run "$PMESH" --socket "$TMP/nowhere.sock" worker upper -- cat
expect_eq "unreachable agent: worker exits 69" 69 "$RC"

# ---- agent shutdown ----------------------------------------------------------------------------

run "$PMESH" create
Z=$OUT
W0=$(agent_stat "$AGENT_SOCK" clients.waiters)
bg await-shutdown "$PMESH" await "$Z"
AWAIT_Z=$BG_PID
need_waiters "$AGENT_SOCK" $((W0 + 1)) # held when the agent is told to stop
kill -TERM "$AGENT_PID"
wait_exit "$AGENT_PID" 10
expect_eq "pmeshd exits 0 on SIGTERM" 0 "$RC"
check "pmeshd removes its socket file" test ! -e "$AGENT_SOCK"
wait_exit "$AWAIT_Z" 10
expect_ne "pending await does not hang when the agent stops" timeout "$RC"
expect_ne "pending await fails when the agent stops" 0 "$RC"
expect_match "pending await says why" "^pmesh: [A-Z_]+: " "$(cat "$TMP/await-shutdown.log")"
run "$PMESH" status
expect_eq "status after shutdown exits 69" 69 "$RC"

# workers outlive their agent: they keep running and reconnect when one comes
# back on the socket (tests/integration/test_worker_restart.sh)
wait_for 10 grep -q "lost the agent" "$TMP/worker-upper.log" || true
expect_match "a worker says when its agent goes away" "lost the agent at .*; reconnecting" \
    "$(cat "$TMP/worker-upper.log")"
if alive "$UPPER_PID"; then ok "... and keeps running"; else not_ok "... and keeps running"; fi
kill -TERM "$UPPER_PID"
wait_exit "$UPPER_PID" 10
expect_eq "... until it is told to stop (exit 0)" 0 "$RC"
for pid in "$EXCLAIM_PID" "$ENV_PID" "$FAIL_PID" "$QUIET_PID" "$SLOW_B" "$MULTI_PID"; do
    kill -TERM "$pid" 2>/dev/null || true
done


# ---- create --token: the settle token an outside system uses over HTTP ----

head -c 32 /dev/urandom >"$TMP/token.secret"
start_agent 7 --token-secret-file "$TMP/token.secret"
run "$PMESH" --socket "$AGENT_SOCK" create --token
expect_eq "create --token exits 0" 0 "$RC"
TID=$(sed -n 1p "$TMP/run.out")
TOK=$(sed -n 2p "$TMP/run.out")
expect_match "... first line: the id" "~" "$TID"
# The token is HMAC-SHA256(secret, "pmesh-settle-v1:" + id), base64url without padding.
WANT=$(python3 -c 'import base64,hashlib,hmac,sys
k=open(sys.argv[1],"rb").read()
print(base64.urlsafe_b64encode(hmac.new(k,("pmesh-settle-v1:"+sys.argv[2]).encode(),hashlib.sha256).digest()).decode().rstrip("="))' \
    "$TMP/token.secret" "$TID")
expect_eq "... second line: HMAC-SHA256 of the id under the agent's secret" "$WANT" "$TOK"
run "$PMESH" --socket "$AGENT_SOCK" create --token
expect_ne "... each promise has its own token" "$TOK" "$(sed -n 2p "$TMP/run.out")"
start_agent 8
run "$PMESH" --socket "$AGENT_SOCK" create --token
expect_eq "create --token on an agent without a token secret exits 1" 1 "$RC"
expect_match "... saying why" "token secret" "$ERR"

finish
