# lib.sh - helpers for pmesh integration tests. Source it from a test:
#
#   . "$(dirname "$0")/lib.sh"
#   start_agent 1
#   run "$PMESH" create;  expect_eq "create exits 0" 0 "$RC"
#   ...
#   finish
#
# Every test gets its own temp dir ($TMP). Every process a test starts goes
# through start_agent or bg, which remember its PID; the EXIT trap stops
# those PIDs (and any PIDs a test command appended to $TMP/child.pids), never
# anything found by name, then removes $TMP.
#
# Assertions print "ok - NAME" or "not ok - NAME" (TAP-like) and count; a
# case the test cannot run here (a tool or a privilege it needs is missing)
# is `skip NAME REASON`: "ok - NAME # SKIP REASON", counted as skipped, never
# as passed. finish prints "N passed, N failed, N skipped" and exits non-zero
# if anything failed.
#
# Order events by observable state, not by sleeping: start an await, then
# `need_waiters SOCK N` (the agent holds the waiter) before settling; a
# promise's timeout passed is `need NAME SECONDS promise_state_is SOCK ID
# timedout`. A sleep belongs in a test only when time passing is itself the
# behaviour under test.

set -euo pipefail

BUILD=${BUILD:-build}
if [ ! -x "$BUILD/bin/pmesh" ] || [ ! -x "$BUILD/bin/pmeshd" ]; then
    echo "lib.sh: no $BUILD/bin/pmesh or $BUILD/bin/pmeshd; build first (make BUILD=$BUILD)" >&2
    exit 1
fi
BIN=$(cd "$BUILD/bin" && pwd)
PMESH=$BIN/pmesh
PMESHD=$BIN/pmeshd
TMP=$(mktemp -d "${TMPDIR:-/tmp}/pmesh-test.XXXXXX")
# Commands a test runs may write their own PIDs here (one per line) so that
# cleanup can stop them, e.g. a worker command that sleeps.
CHILD_PIDS=$TMP/child.pids
: >"$CHILD_PIDS"
# python3 is Debian's (/usr/bin, the one scripts/deps gives python3-zmq and
# python3-protobuf) for everything a test runs, also when a version
# manager's shim comes first on PATH: a shim can take half a second to
# start, inside steps a test times (a pause, a kill interval).
if [ -x /usr/bin/python3 ] && [ "$(command -v python3)" != /usr/bin/python3 ]; then
    mkdir -p "$TMP/sys-python"
    ln -s /usr/bin/python3 "$TMP/sys-python/python3"
    PATH=$TMP/sys-python:$PATH
fi
# Upper bound on any single foreground command, so a hang fails a check
# instead of stalling the suite.
CMD_TIMEOUT=${CMD_TIMEOUT:-30}

PIDS=()
PASSED=0
FAILED=0
SKIPPED=0
FINISHED=0

_lib_cleanup() {
    local rc=$? pid
    trap - EXIT
    local all=("${PIDS[@]}")
    while read -r pid; do
        [ -n "$pid" ] && all+=("$pid")
    done <"$CHILD_PIDS" 2>/dev/null || true
    for pid in "${all[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Give them up to 3 s to finish, then make sure.
    local i
    for i in $(seq 30); do
        local alive=0
        for pid in "${all[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${all[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ "$FINISHED" = 0 ]; then
        echo "not ok - test script stopped early (exit $rc)"
        FAILED=$((FAILED + 1))
        echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
        _lib_dump_logs
        rc=1
    elif [ "$FAILED" -gt 0 ]; then
        _lib_dump_logs
    fi
    if [ -n "${KEEP_TMP:-}" ]; then
        echo "# kept $TMP (KEEP_TMP)"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap _lib_cleanup EXIT
trap 'echo "# error: line $LINENO: $BASH_COMMAND" >&2' ERR

# The tail of every log, to explain a failure.
_lib_dump_logs() {
    local f
    for f in "$TMP"/*.log; do
        [ -s "$f" ] || continue
        echo "# --- tail of $(basename "$f")"
        tail -n 20 "$f" | sed 's/^/#   /'
    done
}

# ---- assertions --------------------------------------------------------------

ok() {
    PASSED=$((PASSED + 1))
    echo "ok - $1"
}

not_ok() {
    FAILED=$((FAILED + 1))
    echo "not ok - $1"
    shift
    local line
    for line in "$@"; do
        echo "#   $line"
    done
}

# skip NAME REASON: a case this run cannot exercise (say why: the tool or
# privilege it lacks). Counted apart from passes: scripts/run-tests reports
# a suite whose every case was skipped as skipped, not passed.
skip() {
    SKIPPED=$((SKIPPED + 1))
    echo "ok - $1 # SKIP $2"
}

# check NAME CMD...: ok if CMD exits 0.
check() {
    local name=$1
    shift
    local rc=0
    timeout -k 2 "$CMD_TIMEOUT" "$@" >"$TMP/check.out" 2>"$TMP/check.err" || rc=$?
    if [ "$rc" = 0 ]; then
        ok "$name"
    else
        not_ok "$name" "command: $*" "exit $rc" "stderr: $(head -c 300 "$TMP/check.err")"
    fi
}

# expect_eq NAME EXPECTED ACTUAL
expect_eq() {
    if [ "$2" == "$3" ]; then
        ok "$1"
    else
        not_ok "$1" "expected: $(printf '%q' "$2")" "got:      $(printf '%q' "$3")"
    fi
}

# expect_ne NAME UNEXPECTED ACTUAL
expect_ne() {
    if [ "$2" != "$3" ]; then
        ok "$1"
    else
        not_ok "$1" "expected anything but: $(printf '%q' "$2")"
    fi
}

# expect_match NAME ERE ACTUAL
expect_match() {
    if [[ $3 =~ $2 ]]; then
        ok "$1"
    else
        not_ok "$1" "expected to match: $2" "got: $(printf '%q' "$3")"
    fi
}

# expect_no_match NAME ERE ACTUAL
expect_no_match() {
    if [[ $3 =~ $2 ]]; then
        not_ok "$1" "expected not to match: $2" "got: $(printf '%q' "$3")"
    else
        ok "$1"
    fi
}

# expect_lt NAME A B: ok if integer A < integer B.
expect_lt() {
    if [ "$2" -lt "$3" ]; then
        ok "$1"
    else
        not_ok "$1" "expected $2 < $3"
    fi
}

# run CMD...: runs CMD (bounded by CMD_TIMEOUT) and sets RC, OUT, ERR. The
# raw output stays in $TMP/run.out and $TMP/run.err for byte comparisons.
run() {
    RC=0
    timeout -k 2 "$CMD_TIMEOUT" "$@" >"$TMP/run.out" 2>"$TMP/run.err" || RC=$?
    OUT=$(tr -d '\000' <"$TMP/run.out")
    ERR=$(cat "$TMP/run.err")
}

# run_in FILE CMD...: like run, with FILE on stdin.
run_in() {
    local in=$1
    shift
    RC=0
    timeout -k 2 "$CMD_TIMEOUT" "$@" <"$in" >"$TMP/run.out" 2>"$TMP/run.err" || RC=$?
    OUT=$(tr -d '\000' <"$TMP/run.out")
    ERR=$(cat "$TMP/run.err")
}

# finish: prints the summary and exits (the EXIT trap then cleans up).
finish() {
    FINISHED=1
    echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
    if [ "$FAILED" = 0 ]; then
        exit 0
    fi
    exit 1
}

# ---- time and JSON --------------------------------------------------------------

# Test ports come from 20000 up to below Linux's ephemeral range (32768-60999
# by default; read from the kernel), so that no outgoing connection (curl,
# ZeroMQ) takes one between the check and the bind.
PORT_LO=20000
PORT_HI=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "${PORT_HI:-0}" -gt $((PORT_LO + 1000)) ] 2>/dev/null || PORT_HI=32000

# port_free P: nothing listens on, is connected from or to, or waits on P,
# and this test has not handed P out already ($TMP/ports: a port handed out
# is often not bound yet when the next is asked for).
port_free() {
    ! grep -qx "$1" "$TMP/ports" 2>/dev/null &&
        ! ss -Htan "( sport = :$1 or dport = :$1 )" 2>/dev/null | grep -q .
}

# free_ports N: a base port B such that B..B+N-1 are free on every 127.0.0.x.
free_ports() {
    local n=$1 p i k busy
    for i in $(seq 100); do
        p=$((PORT_LO + RANDOM % (PORT_HI - PORT_LO - n)))
        busy=0
        for k in $(seq 0 $((n - 1))); do
            if ! port_free $((p + k)); then
                busy=1
                break
            fi
        done
        [ "$busy" = 0 ] && break
    done
    for k in $(seq 0 $((n - 1))); do echo $((p + k)) >>"$TMP/ports"; done
    echo "$p"
}

# take_port: sets PORT to the next free port of this test's own run of them
# (it starts at a place derived from the test's PID, and wraps around).
NEXT_PORT=
take_port() {
    [ -n "$NEXT_PORT" ] || NEXT_PORT=$((PORT_LO + ($$ * 7 + RANDOM) % (PORT_HI - PORT_LO)))
    while :; do
        [ "$NEXT_PORT" -lt "$PORT_HI" ] || NEXT_PORT=$PORT_LO
        port_free "$NEXT_PORT" && break
        NEXT_PORT=$((NEXT_PORT + 1))
    done
    PORT=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
    echo "$PORT" >>"$TMP/ports"
}

now_ms() {
    echo $(($(date +%s%N) / 1000000))
}

# json_get JSON PATH: the value at a dotted path ("labels.team"), strings
# bare, other values as JSON; "<absent>" if missing; "<bad json>" if JSON
# does not parse.
json_get() {
    python3 -c '
import json, sys
try:
    v = json.loads(sys.argv[1])
except Exception:
    print("<bad json>"); sys.exit(0)
for part in sys.argv[2].split("."):
    if isinstance(v, dict) and part in v:
        v = v[part]
    else:
        print("<absent>"); sys.exit(0)
print(v if isinstance(v, str) else json.dumps(v))
' "$1" "$2"
}

# ---- processes -------------------------------------------------------------------

# wait_for SECONDS CMD...: polls CMD until it succeeds; 1 if it never does.
wait_for() {
    local deadline=$(($(now_ms) + $1 * 1000))
    shift
    while ! "$@" >/dev/null 2>&1; do
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

# need NAME SECONDS CMD...: waits (as wait_for) for a state the next steps
# depend on, e.g. an await registered before the promise is settled. Silent
# when it comes (the checks after it assert the outcome); "not ok - NAME"
# when it does not come within SECONDS.
need() {
    local name=$1 secs=$2
    shift 2
    wait_for "$secs" "$@" || not_ok "$name" "waited ${secs} s for: $*"
}

# agent_stat SOCK PATH: one value of `pmesh status` of the agent at SOCK
# (json_get's PATH: "clients.waiters", "promises.timedout").
agent_stat() {
    json_get "$(timeout -k 2 10 "$PMESH" --socket "$1" status 2>/dev/null)" "$2"
}

# stat_at_least SOCK PATH N: that value is an integer >= N.
stat_at_least() {
    local v
    v=$(agent_stat "$1" "$2")
    [[ $v =~ ^[0-9]+$ ]] && [ "$v" -ge "$3" ]
}

# need_waiters SOCK N [SECONDS]: waits until the agent at SOCK holds at least
# N waiters (clients.waiters: its clients' awaits and, on an owner, other
# agents' subscriptions); not ok if it never does (default 10 s).
need_waiters() {
    need "agent at $(basename "$1") holds $2 waiter(s)" "${3:-10}" \
        stat_at_least "$1" clients.waiters "$2"
}

# promise_state_is SOCK ID STATE: `pmesh get ID` through SOCK says STATE.
promise_state_is() {
    [ "$(json_get "$(timeout -k 2 10 "$PMESH" --socket "$1" get "$2" 2>/dev/null)" state)" = "$3" ]
}

# alive PID: running (an exited child not yet reaped, a zombie, is not).
alive() {
    kill -0 "$1" 2>/dev/null && [ "$(ps -o stat= -p "$1" 2>/dev/null | cut -c1)" != Z ]
}

# gone PID: not running (for need/wait_for after a kill of a process that is
# not this shell's child, e.g. a mesh-up agent).
gone() {
    ! alive "$1"
}

# wait_exit PID SECONDS: waits for a process started by bg to exit and sets
# RC to its exit status; RC=timeout if it is still running after SECONDS.
wait_exit() {
    local pid=$1 deadline=$(($(now_ms) + $2 * 1000))
    while alive "$pid"; do
        if [ "$(now_ms)" -ge "$deadline" ]; then
            RC=timeout
            return 0
        fi
        sleep 0.05
    done
    RC=0
    wait "$pid" 2>/dev/null || RC=$?
}

# bg NAME CMD...: starts CMD in the background with stdout in $TMP/NAME.out
# and stderr in $TMP/NAME.log; sets BG_PID and remembers it for cleanup.
bg() {
    local name=$1
    shift
    "$@" >"$TMP/$name.out" 2>"$TMP/$name.log" &
    BG_PID=$!
    PIDS+=("$BG_PID")
}

# start_agent N [PMESHD FLAGS...]: starts pmeshd as node test-N on its own
# socket ($TMP/agent.sock for N=1, $TMP/agent-N.sock otherwise), waits until
# `pmesh status` answers, and sets AGENT_PID and AGENT_SOCK.
start_agent() {
    local n=$1
    shift
    local sock=$TMP/agent.sock
    [ "$n" = 1 ] || sock=$TMP/agent-$n.sock
    # A mesh agent without a configuration store runs knowingly unsafe
    # (issue 11); a test that wants a store passes --coordination.
    local coord=()
    if [[ " $* " == *" --bind "* && " $* " != *" --coordination "* &&
        " $* " != *" --unsafe-no-coordination "* ]]; then
        coord=(--unsafe-no-coordination)
    fi
    bg "agent-$n" "$PMESHD" --socket "$sock" --node "test-$n" "${coord[@]}" "$@"
    AGENT_PID=$BG_PID
    AGENT_SOCK=$sock
    if ! wait_for 10 "$PMESH" --socket "$sock" status; then
        echo "lib.sh: agent test-$n did not come up on $sock" >&2
        _lib_dump_logs >&2
        return 1
    fi
}

# start_worker NAME CMD...: starts `pmesh worker -v ...` (CMD is the worker's
# arguments after "worker"), waits until it says it is serving, and sets
# WORKER_PID. Its stderr is $TMP/NAME.log.
start_worker() {
    local name=$1
    shift
    bg "$name" "$PMESH" worker -v "$@"
    WORKER_PID=$BG_PID
    if ! wait_for 10 grep -q "serving" "$TMP/$name.log"; then
        echo "lib.sh: worker $name did not start" >&2
        cat "$TMP/$name.log" >&2
        return 1
    fi
}
