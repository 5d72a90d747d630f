# shellcheck shell=bash
# mesh_lib.sh - helpers for the mesh integration tests, on top of lib.sh.
#
#   . "$(dirname "$0")/mesh_lib.sh"
#   mesh_up 3 --probe-interval 100ms     # agents n1..n3 via scripts/mesh-up
#   pm 2 create; P=$OUT                  # `pmesh --socket <n2's socket> create`
#   wait_state 1 n2 dead 5               # poll n1's member table
#   mesh_down                            # scripts/mesh-down, logs kept in $TMP
#   finish
#
# A mesh lives in $TMP/mesh-K (K counts meshes in one test). Its agents'
# PIDs go into lib.sh's PIDS, so the EXIT trap stops them (and only them) on
# any failure. MESH_SOCK[k], MESH_PID[k], MESH_EP[k] describe agent nk.
# Agents of one test run share a random port, so concurrent runs and other
# meshes on this machine do not collide.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MESH_UP=$SRC_DIR/scripts/mesh-up
MESH_DOWN=$SRC_DIR/scripts/mesh-down

MESH_DIR=
MESH_COUNT=0
MESH_PORT=
declare -a MESH_SOCK MESH_PID MESH_EP

# The logs of every mesh are shown when a check fails.
_lib_dump_logs() {
    local f
    for f in "$TMP"/*.log "$TMP"/mesh-*/*.log; do
        [ -s "$f" ] || continue
        echo "# --- tail of ${f#"$TMP"/}"
        tail -n 25 "$f" | sed 's/^/#   /'
    done
}

# ---- the helper program --------------------------------------------------------

# build_meshpoke: compiles tests/integration/meshpoke.c into $TMP; sets MESHPOKE.
build_meshpoke() {
    MESHPOKE=$TMP/meshpoke
    local b
    b=$(cd "$BUILD" && pwd)
    # shellcheck disable=SC2046
    # Linked against the build's libpmesh: with its sanitizers when it has them.
    local san=()
    [ -n "${SANITIZE:-}" ] && san=(-fsanitize="$SANITIZE")
    cc -std=gnu11 -O1 -Wall -Wextra "${san[@]}" -I"$SRC_DIR/node" -I"$b/gen" \
        "$SRC_DIR/tests/integration/meshpoke.c" "$b/lib/libpmesh.a" \
        $(pkg-config --cflags --libs libzmq libczmq libprotobuf-c jansson yaml-0.1) \
        -lpthread -lm -o "$MESHPOKE"
}

# ---- starting and stopping ---------------------------------------------------------

# mesh_up N [PMESHD FLAGS...]: starts agents n1..nN with scripts/mesh-up and
# waits until each sees N alive (mesh-up does). Retries on another port if
# the port turns out to be taken. The mesh suites test the mesh's own
# semantics, fate-sharing (--replicas 1: a dead owner's promises fail with
# OWNER_LOST); pass --replicas 2 to test takeover (test_durability does).
mesh_up() {
    local n=$1 try k pid node
    shift
    MESH_COUNT=$((MESH_COUNT + 1))
    MESH_DIR=$TMP/mesh-$MESH_COUNT
    for try in 1 2 3; do
        MESH_PORT=$(free_ports 1)
        rm -rf "$MESH_DIR"
        if BUILD=$BUILD MESH_UP_TIMEOUT=${MESH_UP_TIMEOUT:-20} "$MESH_UP" "$n" --dir "$MESH_DIR" \
            --port "$MESH_PORT" -- --replicas 1 "$@" >"$TMP/mesh-up.out" 2>"$TMP/mesh-up.err"; then
            break
        fi
        if [ "$try" = 3 ] || ! grep -q "Address already in use" "$TMP/mesh-up.err"; then
            cat "$TMP/mesh-up.err" >&2
            return 1
        fi
    done
    while read -r node pid; do
        k=${node#n}
        MESH_PID[$k]=$pid
        MESH_SOCK[$k]=$MESH_DIR/$node.sock
        MESH_EP[$k]=tcp://127.0.0.$k:$MESH_PORT
        PIDS+=("$pid")
    done <"$MESH_DIR/pids"
}

# mesh_down: stops the current mesh with scripts/mesh-down, keeping its logs
# in $TMP (as mesh-M-nK.log) for the failure report.
mesh_down() {
    local f
    for f in "$MESH_DIR"/*.log; do
        [ -e "$f" ] && cp "$f" "$TMP/mesh-$MESH_COUNT-$(basename "$f")"
    done
    "$MESH_DOWN" "$MESH_DIR"
}

# mesh_restart K: starts agent nK again with the command line mesh-up used
# (same node name, socket, endpoint; a new id space), adds it to DIR/pids so
# mesh-down stops it too, and waits until it answers.
mesh_restart() {
    local k=$1
    bash -c "exec $(cat "$MESH_DIR/n$k.cmd")" </dev/null >/dev/null 2>>"$MESH_DIR/n$k.log" &
    MESH_PID[$k]=$!
    PIDS+=("$!")
    echo "n$k $!" >>"$MESH_DIR/pids"
    disown "$!" # a later SIGKILL of it is the test's doing: no "Killed" notice
    wait_for 10 "$PMESH" --socket "${MESH_SOCK[$k]}" status
}

# ---- talking to agents -------------------------------------------------------------

# pm K ARGS...: `pmesh --socket <nK's socket> ARGS`, through lib.sh's run
# (sets RC, OUT, ERR).
pm() {
    local k=$1
    shift
    run "$PMESH" --socket "${MESH_SOCK[$k]}" "$@"
}

# pm_bg NAME K ARGS...: the same in the background (lib.sh's bg; BG_PID).
pm_bg() {
    local name=$1 k=$2
    shift 2
    bg "$name" "$PMESH" --socket "${MESH_SOCK[$k]}" "$@"
}

# mstat K PATH: one value of nK's status ("mesh.members.alive").
mstat() {
    json_get "$("$PMESH" --socket "${MESH_SOCK[$1]}" status 2>/dev/null)" "$2"
}

# backup_of K: the node nK replicates to ("" if none yet).
backup_of() {
    python3 -c '
import json, sys
try:
    bs = json.loads(sys.argv[1])["replication"]["backups"]
    print(bs[0]["node"] if bs else "")
except Exception:
    print("")
' "$("$PMESH" --socket "${MESH_SOCK[$1]}" status 2>/dev/null)"
}

# members K: nK's member table as JSON (pmesh members when the CLI has it,
# else meshpoke).
members() {
    local out
    if out=$("$PMESH" --socket "${MESH_SOCK[$1]}" members --json 2>/dev/null) && [[ $out == \[* ]]; then
        echo "$out"
    else
        "$MESHPOKE" members "${MESH_SOCK[$1]}"
    fi
}

# member_field K NODE FIELD: FIELD (state, incarnation, ...) of NODE in nK's
# table; "<absent>" if nK does not know NODE.
member_field() {
    python3 -c '
import json, sys
try:
    ms = json.loads(sys.argv[1])
except Exception:
    print("<bad json>"); sys.exit(0)
for m in ms:
    if m.get("node") == sys.argv[2]:
        print(m.get(sys.argv[3], "<absent>")); sys.exit(0)
print("<absent>")
' "$(members "$1" 2>/dev/null)" "$2" "$3"
}

# wait_state K NODE STATE SECONDS: polls until nK holds NODE in STATE.
_is_state() { [ "$(member_field "$1" "$2" state)" = "$3" ]; }
wait_state() {
    wait_for "$4" _is_state "$1" "$2" "$3"
}

# wait_stat K PATH VALUE SECONDS: polls until mstat K PATH is VALUE.
_is_stat() { [ "$(mstat "$1" "$2")" = "$3" ]; }
wait_stat() {
    wait_for "$4" _is_stat "$1" "$2" "$3"
}

# need_waiters_on K N: waits until nK holds at least N waiters (lib.sh's
# need_waiters on nK's socket). On a promise's owner each other agent's
# subscription is one waiter, however many local awaits it stands for.
need_waiters_on() {
    need_waiters "${MESH_SOCK[$1]}" "$2"
}

# need_relayed K N: waits until nK has relayed at least N requests
# (mesh.relayed: an await's subscription, a forwarded get or settle).
need_relayed() {
    need "n$1 relayed $2 request(s)" 10 stat_at_least "${MESH_SOCK[$1]}" mesh.relayed "$2"
}

# log_count K TAG: lines of nK's log with TAG.
log_count() {
    grep -c -- "$2" "$MESH_DIR/n$1.log" 2>/dev/null || true
}

# timed_bg NAME K ARGS...: `pmesh --socket <nK's socket> ARGS` in the
# background; when it ends, $TMP/NAME.done holds "EXIT_CODE END_MS" (wall
# clock ms). Its stdout is $TMP/NAME.out, its stderr $TMP/NAME.log. BG_PID.
timed_bg() {
    local name=$1 k=$2
    shift 2
    bg "$name" bash -c '"$@"; rc=$?; echo "$rc $(($(date +%s%N) / 1000000))" >"$0"; exit $rc' \
        "$TMP/$name.done" "$PMESH" --socket "${MESH_SOCK[$k]}" "$@"
}

# done_rc NAME / done_ms NAME: what timed_bg recorded ("" if still running).
done_rc() { cut -d' ' -f1 "$TMP/$1.done" 2>/dev/null || true; }
done_ms() { cut -d' ' -f2 "$TMP/$1.done" 2>/dev/null || true; }

# wait_done SECONDS NAME...: waits until every NAME has ended; 1 if not.
_all_done() {
    local n
    for n in "$@"; do
        [ -s "$TMP/$n.done" ] || return 1
    done
}
wait_done() {
    local s=$1
    shift
    wait_for "$s" _all_done "$@"
}

# ---- workers -------------------------------------------------------------------------

# mesh_worker NAME K FUNCTION CONCURRENCY CMD...: `pmesh worker -v` on nK;
# waits until it serves. Its log ($TMP/NAME.log) names every invocation it
# ran. Sets WORKER_PID.
mesh_worker() {
    local name=$1 k=$2 fn=$3 conc=$4
    shift 4
    bg "$name" "$PMESH" --socket "${MESH_SOCK[$k]}" worker -v "$fn" --concurrency "$conc" -- "$@"
    WORKER_PID=$BG_PID
    if ! wait_for 10 grep -q "serving" "$TMP/$name.log"; then
        echo "mesh_lib: worker $name did not start" >&2
        cat "$TMP/$name.log" >&2
        return 1
    fi
}

# fn_free K NODE FUNCTION: free slots nK believes NODE has for FUNCTION
# (gossiped capacity); "<absent>" if NODE does not serve it in nK's view.
fn_free() {
    python3 -c '
import json, sys
try:
    ms = json.loads(sys.argv[1])
except Exception:
    print("<bad json>"); sys.exit(0)
for m in ms:
    if m.get("node") == sys.argv[2]:
        for f in m.get("functions", []):
            if f.get("name") == sys.argv[3]:
                print(f.get("free")); sys.exit(0)
print("<absent>")
' "$(members "$1" 2>/dev/null)" "$2" "$3"
}

# wait_fn K NODE FUNCTION FREE SECONDS: polls until nK believes NODE has FREE
# free slots for FUNCTION.
_is_fn() { [ "$(fn_free "$1" "$2" "$3")" = "$4" ]; }
wait_fn() {
    wait_for "$5" _is_fn "$1" "$2" "$3" "$4"
}

# app_received K: messages nK received over the mesh that are not SWIM
# (requests, replies, invocations), by type ("type=N ..."), so that two
# readings compare equal only when no such message came, and a failed
# comparison names the type that did. Batch frames are left out: a batch's
# envelopes are counted by their own types, and a turn that sends a peer two
# SWIM messages sends them as one batch.
app_received() {
    python3 -c '
import json, sys
try:
    r = json.loads(sys.argv[1])["mesh"]["received"]
except Exception:
    print("<bad json>"); sys.exit(0)
print(" ".join("%s=%d" % (k, v["messages"]) for k, v in sorted(r.items())
               if not k.startswith("swim_") and k != "batch" and v["messages"]))
' "$("$PMESH" --socket "${MESH_SOCK[$1]}" status 2>/dev/null)"
}
