#!/usr/bin/env bash
# test_durability.sh - what an acknowledgement promises survives: real pmeshd
# agents with --data-dir, killed with SIGKILL and restarted on the same dir,
# driven through the real `pmesh` CLI and workers.
#
# One agent: acknowledged create / settle / heartbeat / then survive SIGKILL
# and restart; a deadline that passed while the agent was down fires at start;
# ids minted after a restart never repeat ids from before; a torn WAL tail is
# cut off (PM-WAL-TORN) and the agent starts; a damaged record in the middle
# of the log makes pmeshd refuse to start with a clear error.
#
# Three agents, --replicas 2: SIGKILL of an owner, and its first backup
# serves its promises within a bound (measured); an await from a third agent
# survives the takeover and completes; a continuation registered before the
# kill runs after it exactly once; the killed owner restarted on its data dir
# rejoins with a new id space while requests for its old ids still work; a
# killed backup is replaced (status replication.backups changes, the new one
# counts). An agent that took a space over and its backup killed together:
# the agent restarted alone resumes that space (the takeover is in its WAL)
# with what it acknowledged. An owner restarted after its backup died with it
# (nobody took its space over) resumes it after takeover_grace; a get through
# it at once waits for that and answers, never NOT_FOUND. Three agents,
# --replicas 1: the same kill fails requests and waiters with OWNER_LOST
# promptly, and the restarted owner serves them again.
#
#   BUILD=build tests/integration/test_durability.sh
. "$(dirname "$0")/mesh_lib.sh"

# Takeover / OWNER_LOST bound: failure detection is ~1-1.5 s with the default
# SWIM timers, a takeover is announced in one gossip round; the rest is room
# for a loaded CI box.
TAKEOVER_BOUND_MS=5000

# wal_files DIR: the log segments of a data dir, oldest first.
wal_files() {
    ls "$1"/wal-*.log 2>/dev/null | sort
}

# field ID KEY [K]: one field of `pmesh get ID` through agent K (default the
# single agent's socket).
field() {
    local out
    if [ -n "${3:-}" ]; then
        out=$("$PMESH" --socket "${MESH_SOCK[$3]}" get "$1" 2>/dev/null) || true
    else
        out=$("$PMESH" --socket "$SOCK" get "$1" 2>/dev/null) || true
    fi
    json_get "$out" "$2"
}

# ======================================================= one agent, one data dir

D=$TMP/d1
# agent1 DIR: starts the single agent on its data dir; A is its PID. Its
# SIGKILLs are the test's doing: no "Killed" job notices (lib.sh still stops
# it on exit).
agent1() {
    start_agent 1 --data-dir "$1" || return 1
    A=$AGENT_PID
    disown "$A"
}

agent1 "$D"
SOCK=$AGENT_SOCK

run "$PMESH" --socket "$SOCK" create
P_PLAIN=$OUT
run "$PMESH" --socket "$SOCK" create
P_RES=$OUT
run "$PMESH" --socket "$SOCK" resolve "$P_RES" "kept value"
expect_eq "resolve acknowledged" 0 "$RC"
run "$PMESH" --socket "$SOCK" create
P_REJ=$OUT
run "$PMESH" --socket "$SOCK" reject "$P_REJ" "kept reason"
expect_eq "reject acknowledged" 0 "$RC"
run "$PMESH" --socket "$SOCK" create --heartbeat 1h
P_HB=$OUT
HB0=$(field "$P_HB" heartbeat_at_ms)
# Time must pass for a heartbeat to move the deadline (ms resolution).
sleep 0.05
run "$PMESH" --socket "$SOCK" heartbeat "$P_HB"
expect_eq "heartbeat acknowledged" 0 "$RC"
HB1=$(field "$P_HB" heartbeat_at_ms)
expect_lt "the heartbeat moved the deadline (so losing it would show)" "$HB0" "$HB1"
run "$PMESH" --socket "$SOCK" create --timeout 2s
P_DL=$OUT
DL_AT=$(field "$P_DL" timeout_at_ms)
run "$PMESH" --socket "$SOCK" create
P_SRC=$OUT
run "$PMESH" --socket "$SOCK" then "$P_SRC" up
P_THEN=$OUT
expect_eq "then acknowledged" 0 "$RC"
BEFORE=()
for i in $(seq 20); do
    run "$PMESH" --socket "$SOCK" create
    BEFORE+=("$OUT")
done
SPACE1=$(json_get "$("$PMESH" --socket "$SOCK" status 2>/dev/null)" id_space)
GEN0=$(json_get "$("$PMESH" --socket "$SOCK" status 2>/dev/null)" generation)

kill -KILL "$A"
wait_exit "$A" 5
# The 2 s deadline passes while the agent is down (time passing is the
# behaviour under test).
while [ "$(now_ms)" -lt $((DL_AT + 500)) ]; do sleep 0.1; done
agent1 "$D"
UP_MS=$(now_ms)

expect_eq "after SIGKILL + restart: deadline that passed while down fired at start" "timedout" \
    "$(field "$P_DL" state)"
SETTLED=$(field "$P_DL" settled_ms)
if [[ $SETTLED =~ ^[0-9]+$ ]] && [ "$SETTLED" -ge "$DL_AT" ] && [ "$SETTLED" -le $((UP_MS + 1000)) ]; then
    ok "... settled at start-up, not before its deadline ($((SETTLED - DL_AT)) ms after it)"
else
    not_ok "... settled at start-up, not before its deadline" "deadline $DL_AT, up $UP_MS, settled_ms $SETTLED"
fi
expect_eq "acknowledged create survives (pending)" "pending" "$(field "$P_PLAIN" state)"
expect_eq "acknowledged resolve survives" "resolved|kept value" \
    "$(field "$P_RES" state)|$(field "$P_RES" value)"
expect_eq "acknowledged reject survives" "rejected|kept reason" \
    "$(field "$P_REJ" state)|$(field "$P_REJ" reason)"
expect_eq "acknowledged heartbeat survives (same heartbeat deadline)" "$HB1" \
    "$(field "$P_HB" heartbeat_at_ms)"
expect_eq "acknowledged then survives: its promise exists" "pending" "$(field "$P_THEN" state)"
expect_match "restart logs PM-AGENT-RECOVERED for the same space, next generation" \
    "PM-AGENT-RECOVERED generation $((GEN0 + 1)) of id space $SPACE1: [1-9][0-9]* promises" \
    "$(cat "$TMP/agent-1.log")"
expect_match "... and PM-WAL-RECOVERED" "PM-WAL-RECOVERED" "$(cat "$TMP/agent-1.log")"
GEN1=$(json_get "$("$PMESH" --socket "$SOCK" status 2>/dev/null)" generation)
expect_eq "the restart is a new generation" "$((GEN0 + 1))" "$GEN1"

PMESH_SOCKET=$SOCK start_worker w-up up --concurrency 1 -- tr a-z A-Z
run "$PMESH" --socket "$SOCK" resolve "$P_SRC" "chain me"
run "$PMESH" --socket "$SOCK" await "$P_THEN" --timeout 10s
expect_eq "the continuation registered before the kill runs after the restart" "0 CHAIN ME" "$RC $OUT"

AFTER=()
for i in $(seq 20); do
    run "$PMESH" --socket "$SOCK" create
    AFTER+=("$OUT")
done
run "$PMESH" --socket "$SOCK" then "$P_RES" up
AFTER+=("$OUT")
dups=$(printf '%s\n' "${BEFORE[@]}" "$P_PLAIN" "$P_RES" "$P_REJ" "$P_HB" "$P_DL" "$P_SRC" "$P_THEN" |
    sort | comm -12 - <(printf '%s\n' "${AFTER[@]}" | sort) | tr '\n' ' ')
expect_eq "ids minted after the restart never equal ids from before" "" "$dups"
expect_eq "... (and they were minted: 21 ids)" 21 "$(printf '%s\n' "${AFTER[@]}" | grep -c .)"

# ---- a torn tail: the last record cut short while the agent was down --------------

run "$PMESH" --socket "$SOCK" create
P_LAST_OK=$OUT
run "$PMESH" --socket "$SOCK" create
kill -KILL "$A"
wait_exit "$A" 5
LAST=$(wal_files "$D" | tail -n 1)
SIZE=$(stat -c %s "$LAST")
truncate -s $((SIZE - 5)) "$LAST"
: >"$TMP/agent-1.log"
if agent1 "$D" 2>/dev/null; then
    ok "torn WAL tail (last segment cut by 5 bytes): the agent starts"
else
    not_ok "torn WAL tail (last segment cut by 5 bytes): the agent starts" "$(tail -n 5 "$TMP/agent-1.log")"
fi
expect_match "... logging PM-WAL-TORN" "PM-WAL-TORN" "$(cat "$TMP/agent-1.log")"
expect_eq "... records before the torn one are all there" "pending|resolved" \
    "$(field "$P_LAST_OK" state)|$(field "$P_RES" state)"
run "$PMESH" --socket "$SOCK" create
expect_eq "... and it takes new writes" 0 "$RC"

# ---- corruption before the tail: refuse to start ------------------------------------

kill -KILL "$A"
wait_exit "$A" 5
FIRST=$(wal_files "$D" | head -n 1)
# Segment header (16 bytes) + frame header (16): offset 40 is inside the
# payload of the first record, with many valid records after it.
python3 -c '
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(40)
    b = f.read(1)
    f.seek(40)
    f.write(bytes([b[0] ^ 0xFF]))
' "$FIRST"
CMD_TIMEOUT=10 run "$PMESHD" --node test-1 --socket "$TMP/agent-c.sock" --data-dir "$D"
if [ "$RC" != 0 ] && [ "$RC" != 124 ] && [ "$RC" != 137 ]; then
    ok "a flipped byte early in the log: pmeshd refuses to start (exit $RC)"
else
    not_ok "a flipped byte early in the log: pmeshd refuses to start" "exit $RC" "$(tail -n 3 <<<"$ERR")"
fi
expect_match "... with a clear error naming the damage (PM-WAL-CORRUPT, file, offset)" \
    "PM-WAL-CORRUPT.*$(basename "$FIRST").*offset" "$ERR"
expect_eq "... and it never served the socket" "no" "$([ -S "$TMP/agent-c.sock" ] && echo yes || echo no)"

# ============================================ three agents, --replicas 2: takeover

# dmesh_up N [PMESHD FLAGS...]: like mesh_lib's mesh_up, but each agent nK gets
# its own data dir $MESH_DIR/nK.data (mesh-up passes the same flags to all).
# Writes nK.cmd and pids so mesh_restart and mesh_down work on it.
dmesh_up() {
    local n=$1 try k pid up
    shift
    # One CURVE keypair for every agent, as mesh-up does.
    [ -f "$TMP/keys/mesh.key" ] || "$PMESHD" --keygen "$TMP/keys" >/dev/null
    MESH_COUNT=$((MESH_COUNT + 1))
    MESH_DIR=$TMP/mesh-$MESH_COUNT
    MESH_N=$n
    for try in 1 2 3; do
        rm -rf "$MESH_DIR"
        mkdir -p "$MESH_DIR"
        : >"$MESH_DIR/pids"
        MESH_PORT=$(free_ports 1)
        for k in $(seq "$n"); do
            local cmd=("$PMESHD" --node "n$k" --socket "$MESH_DIR/n$k.sock"
                --bind "tcp://127.0.0.$k:$MESH_PORT" --seed "tcp://127.0.0.1:$MESH_PORT"
                --mesh-key-dir "$TMP/keys" --data-dir "$MESH_DIR/n$k.data" --log-level info --unsafe-no-coordination "$@")
            printf '%q ' "${cmd[@]}" >"$MESH_DIR/n$k.cmd"
            "${cmd[@]}" </dev/null >/dev/null 2>>"$MESH_DIR/n$k.log" &
            pid=$!
            PIDS+=("$pid")
            disown "$pid"
            echo "n$k $pid" >>"$MESH_DIR/pids"
            MESH_PID[$k]=$pid
            MESH_SOCK[$k]=$MESH_DIR/n$k.sock
            MESH_EP[$k]=tcp://127.0.0.$k:$MESH_PORT
        done
        up=1
        for k in $(seq "$n"); do
            wait_stat "$k" mesh.members.alive "$n" 20 || up=0
        done
        [ "$up" = 1 ] && return 0
        grep -q "Address already in use" "$MESH_DIR"/*.log || break
        "$MESH_DOWN" "$MESH_DIR" >/dev/null 2>&1 || true
    done
    echo "dmesh_up: $n agents did not form a mesh" >&2
    return 1
}

# backup_of K: the first backup agent nK replicates to ("" if none), and
# whether it counts ("node counted").
backup_of() {
    python3 -c '
import json, sys
try:
    b = json.loads(sys.argv[1])["replication"]["backups"]
    print(b[0]["node"], "counted" if b[0]["counted"] else "copying")
except Exception:
    print("")
' "$("$PMESH" --socket "${MESH_SOCK[$1]}" status 2>/dev/null)"
}

# get_until K ID SECONDS: polls `pmesh get ID` through nK until it answers
# 0; sets RC/OUT/ERR of the last try.
get_until() {
    local k=$1 id=$2 deadline=$(($(now_ms) + $3 * 1000))
    while :; do
        pm "$k" get "$id"
        [ "$RC" = 0 ] && return 0
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.05
    done
}

dmesh_up 3 --replicas 2
OWNER=2
SPACE_OLD=$(mstat $OWNER id_space)
mesh_worker w1 1 up 2 tr a-z A-Z
mesh_worker w3 3 up 2 tr a-z A-Z

pm $OWNER create
P1=$OUT
pm 1 resolve "$P1" "before the kill"
pm $OWNER create
P2=$OUT
pm $OWNER create
W=$OUT
pm $OWNER create
C=$OUT
pm 1 then "$C" up
Dq=$OUT
expect_match "then on n2's promise: the continuation lives in n2's space" "^${SPACE_OLD}~" "$Dq"
pm $OWNER create
OLD=$OUT
read -r BACKUP _ <<<"$(backup_of $OWNER)"
expect_match "n2 replicates to a backup" "^n[13]$" "$BACKUP"
# The third agent: neither the owner nor its backup.
[ "$BACKUP" = n1 ] && THIRD=3 || THIRD=1
BK=${BACKUP#n}
# With a WAL a backup's acknowledgements wait for its fsync (held by its
# journal); released, they are still counted as what they are, not as
# replies. n2 streamed a record batch for each of the 7 changes above, each
# acknowledged once (only the end of a state transfer is acknowledged
# unheld: nothing to make durable).
_acks_counted() { stat_at_least "${MESH_SOCK[$BK]}" mesh.sent.replicate_ack.messages 6; }
if wait_for 10 _acks_counted; then
    ok "the backup's held acknowledgements are counted as replicate_ack"
else
    not_ok "the backup's held acknowledgements are counted as replicate_ack" \
        "replicate_ack=$(agent_stat "${MESH_SOCK[$BK]}" mesh.sent.replicate_ack.messages) reply=$(agent_stat "${MESH_SOCK[$BK]}" mesh.sent.reply.messages)"
fi
W_OWNER=$(mstat $OWNER clients.waiters)
timed_bg aw $THIRD await "$W" --timeout 30s
need_waiters_on $OWNER $((W_OWNER + 1)) # n$THIRD's subscription, held at the owner

T0=$(now_ms)
kill -KILL "${MESH_PID[$OWNER]}"
if get_until "$THIRD" "$P1" 15; then
    SERVE_MS=$(($(now_ms) - T0))
    expect_lt "SIGKILL of owner n2: n$THIRD gets its promise within ${TAKEOVER_BOUND_MS} ms (took ${SERVE_MS} ms)" \
        "$SERVE_MS" "$TAKEOVER_BOUND_MS"
else
    not_ok "SIGKILL of owner n2: another agent serves its promises" "last: $RC $ERR"
fi
expect_eq "... with the acknowledged value" "resolved|before the kill" \
    "$(json_get "$OUT" state)|$(json_get "$OUT" value)"
expect_eq "... taken over by n2's backup $BACKUP" 1 "$(log_count "$BK" "PM-TAKEOVER.*$SPACE_OLD")"
pm $THIRD resolve "$P2" "settled after the takeover"
expect_eq "a pending promise of the dead owner can be settled" 0 "$RC"
pm 1 get "$P2"
expect_eq "... and reads so from n1" "resolved" "$(json_get "$OUT" state)"

expect_eq "the await from n$THIRD on n2's promise is still waiting" "" "$(done_rc aw)"
pm "$BK" resolve "$W" "after the takeover"
wait_done 10 aw || true
expect_eq "... it survives the takeover and completes" "0|after the takeover" \
    "$(done_rc aw)|$(cat "$TMP/aw.out")"

pm 3 resolve "$C" "abc"
pm 1 await "$Dq" --timeout 10s
expect_eq "the continuation registered before the kill runs after it" "0 ABC" "$RC $OUT"
# A negative check: a second run would come after the first; give it time
# to show (nothing observable says none is coming).
sleep 1
RUNS=$(cat "$TMP/w1.log" "$TMP/w3.log" | grep -c -- "-> $Dq (" || true)
expect_eq "... exactly once (worker logs)" 1 "$RUNS"
pm 3 get "$Dq"
expect_eq "... and its target settled once, with that result" "resolved|ABC" \
    "$(json_get "$OUT" state)|$(json_get "$OUT" value)"

# ---- the killed owner restarts on its data dir --------------------------------------

mesh_restart $OWNER
if wait_stat $OWNER mesh.members.alive 3 15; then ok "restarted n2 rejoins"; else
    not_ok "restarted n2 rejoins" "alive=$(mstat $OWNER mesh.members.alive)"; fi
SPACE_NEW=$(mstat $OWNER id_space)
expect_ne "... with a new id space" "$SPACE_OLD" "$SPACE_NEW"
# Its old space is resumed only if nobody took it over: the agent decides
# once takeover_grace is over, and logs either way (PM-SPACE-MOVED, or
# PM-TAKEOVER "serving id space"). Wait for the decision, then check it.
_decided() {
    [ "$(log_count $OWNER "PM-SPACE-MOVED.*$SPACE_OLD")" -ge 1 ] ||
        [ "$(log_count $OWNER "serving id space $SPACE_OLD")" -ge 1 ]
}
need "the restarted n2 decides about its old space" 15 _decided
expect_eq "... and learns that its old space moved (PM-SPACE-MOVED)" 1 \
    "$(log_count $OWNER "PM-SPACE-MOVED.*$SPACE_OLD")"
expect_eq "... and does not resume it" 0 "$(log_count $OWNER "serving id space $SPACE_OLD")"
pm $OWNER get "$P1"
expect_eq "an old id through the restarted agent: served by the new owner" "0|resolved" \
    "$RC|$(json_get "$OUT" state)"
pm $OWNER resolve "$OLD" "settled through the restarted agent"
expect_eq "an old pending id settled through the restarted agent" 0 "$RC"
pm "$THIRD" get "$OLD"
expect_eq "... reads so elsewhere" "resolved|settled through the restarted agent" \
    "$(json_get "$OUT" state)|$(json_get "$OUT" value)"
pm $OWNER create
expect_match "new promises on n2 go to its new space" "^${SPACE_NEW}~" "$OUT"

# ---- a killed backup is replaced ------------------------------------------------------

X=1
pm $X create
read -r B0 COUNTED <<<"$(backup_of $X)"
expect_eq "n1 has a backup that counts" "counted" "${COUNTED:-}"
BX=${B0#n}
kill -KILL "${MESH_PID[$BX]}"
T0=$(now_ms)
_new_backup() {
    local b c
    read -r b c <<<"$(backup_of $X)"
    [ -n "$b" ] && [ "$b" != "$B0" ] && [ "$c" = counted ]
}
if wait_for 15 _new_backup; then
    ok "backup $B0 killed: n1 picks another backup that counts ($(backup_of $X), $(($(now_ms) - T0)) ms)"
else
    not_ok "backup $B0 killed: n1 picks another backup that counts" "now: $(backup_of $X)"
fi
pm $X create
expect_eq "... and n1 acknowledges writes again" 0 "$RC"
mesh_down

# ========= three agents, --replicas 2: an agent that took a space over resumes it
# after a total outage (it and its backup killed at once): the takeover is in
# its WAL, and a restart serves every space it served once nobody else does.

dmesh_up 3 --replicas 2 --retire-interval 1s
S2=$(mstat 2 id_space)
pm 2 create
P=$OUT
pm 2 resolve "$P" "before the kill"
pm 2 create
R=$OUT
kill -KILL "${MESH_PID[2]}"
_taken_by() { # prints the agent that took S2 over
    local k
    for k in 1 3; do
        [ "$(log_count "$k" "PM-TAKEOVER.*$S2")" -ge 1 ] && echo "$k" && return 0
    done
    return 1
}
if wait_for 15 _taken_by; then
    H=$(_taken_by)
    ok "n2 killed: n$H takes its space over"
else
    H=1
    not_ok "n2 killed: n1 or n3 takes its space over"
fi
[ "$H" = 1 ] && X=3 || X=1
SH=$(mstat "$H" id_space)
get_until "$H" "$R" 10 || true
pm "$H" resolve "$R" "after the takeover"
expect_eq "a settle through the new owner n$H is acknowledged" 0 "$RC"
# n$H's backup is n$X, the only other live agent: both go at once.
kill -KILL "${MESH_PID[$H]}" "${MESH_PID[$X]}"
need "n$H and n$X are gone" 5 eval "gone ${MESH_PID[$H]} && gone ${MESH_PID[$X]}"
mesh_restart "$H"
_resumed() { [ "$(log_count "$H" "PM-TAKEOVER.*$S2.*nobody took it over")" -ge 1 ]; }
if wait_for 30 _resumed; then
    ok "n$H restarted alone: it resumes n2's space, which it had taken over (nobody serves it)"
else
    not_ok "n$H restarted alone: it resumes n2's space, which it had taken over"
fi
get_until "$H" "$R" 10 || true
expect_eq "... with the settle it acknowledged after the takeover" \
    "0|resolved|after the takeover" "$RC|$(json_get "$OUT" state)|$(json_get "$OUT" value)"
pm "$H" get "$P"
expect_eq "... and what n2 acknowledged before it died" "0|resolved|before the kill" \
    "$RC|$(json_get "$OUT" state)|$(json_get "$OUT" value)"
# n$H's own old space, resumed too, never held a promise: it is given up.
_retired() { [ "$(log_count "$H" "PM-SPACE-RETIRED.*$SH")" -ge 1 ]; }
if wait_for 10 _retired; then
    ok "n$H retires its old space $SH, which holds no promise (--retire-interval 1s)"
else
    not_ok "n$H retires its old space $SH, which holds no promise"
fi
expect_eq "... but not n2's, which holds promises" 0 "$(log_count "$H" "PM-SPACE-RETIRED.*$S2")"
expect_eq "... and counts it in status" 1 "$(mstat "$H" replication.spaces_retired)"
mesh_restart "$X"
wait_stat "$H" mesh.members.alive 2 15 || true
mesh_restart 2
# At once, before n2 can have heard who serves what: it waits for the mesh's
# metadata rather than calling the id unknown.
pm 2 get "$R"
expect_eq "n2 just restarted: a get of a promise another agent serves answers at once" \
    "0|resolved" "$RC|$(json_get "$OUT" state)"
# A space named after a live member that nobody announced (its new primary,
# not gossiped yet, as far as the asker knows): the asker waits for news
# before NOT_FOUND. A space named after nobody: NOT_FOUND at once.
T0=$(now_ms)
pm "$H" get "n2-zz0none~1"
WAITED=$(($(now_ms) - T0))
expect_eq "an id in an unheard-of space of live n2: NOT_FOUND" "1|yes" \
    "$RC|$([[ $ERR == *NOT_FOUND* ]] && echo yes || echo no)"
if [ "$WAITED" -ge 1800 ]; then ok "... after waiting for n2's news (${WAITED} ms)"; else
    not_ok "... after waiting for n2's news" "answered in ${WAITED} ms"; fi
pm "$H" get "nobody-zz0none~1"
expect_eq "an id in a space of no member: NOT_FOUND" "1|yes" \
    "$RC|$([[ $ERR == *NOT_FOUND* ]] && echo yes || echo no)"
_moved() { [ "$(log_count 2 "PM-SPACE-MOVED.*$S2")" -ge 1 ]; }
if wait_for 15 _moved; then
    ok "n2 restarted: it learns its old space is served by n$H, and does not resume it"
else
    not_ok "n2 restarted: it learns its old space is served by n$H"
fi
expect_eq "... (no second claim of it)" 0 "$(log_count 2 "PM-TAKEOVER.*$S2")"
get_until 2 "$R" 10 || true
expect_eq "... and reads the settle through it" "0|resolved|after the takeover" \
    "$RC|$(json_get "$OUT" state)|$(json_get "$OUT" value)"
mesh_down

# ====== three agents, --replicas 2: the owner restarted while nobody took its space
# over (its backup died with it; the third agent is no heir) resumes it after
# takeover_grace. Requests through it in the meantime wait for that decision:
# its promises exist (in its WAL), so never NOT_FOUND.

dmesh_up 3 --replicas 2
pm 2 create
P=$OUT
pm 2 resolve "$P" "kept"
pm 2 create
Q=$OUT
read -r BACKUP _ <<<"$(backup_of 2)"
BK=${BACKUP#n}
[ "$BK" = 1 ] && T=3 || T=1
S2=$(mstat 2 id_space)
kill -KILL "${MESH_PID[2]}" "${MESH_PID[$BK]}"
need "n2 and its backup n$BK are gone" 5 eval "gone ${MESH_PID[2]} && gone ${MESH_PID[$BK]}"
wait_state "$T" n2 dead 15 || true
wait_state "$T" "n$BK" dead 15 || true
# Its seed n1 may be the backup killed with it: it also lists n$T (as a
# deployment lists several seeds), so that it meets the mesh.
printf ' --seed %q' "${MESH_EP[$T]}" >>"$MESH_DIR/n2.cmd"
mesh_restart 2
# At once: n2 has not decided about S2 yet (takeover_grace).
T0=$(now_ms)
pm 2 get "$P"
GOT_MS=$(($(now_ms) - T0))
expect_eq "n2 restarted, its space on probation: a get through it at once answers (not NOT_FOUND)" \
    "0|resolved|kept" "$RC|$(json_get "$OUT" state)|$(json_get "$OUT" value)"
expect_lt "... within forward_timeout (${GOT_MS} ms)" "$GOT_MS" 10000
expect_eq "... once n2 resumed S2 (nobody took it over)" 1 \
    "$(log_count 2 "PM-TAKEOVER.*$S2.*nobody took it over")"
pm 2 resolve "$Q" "after the restart"
expect_eq "a settle of its pending promise through n2 is acknowledged" 0 "$RC"
pm "$T" get "$Q"
expect_eq "... and reads so through n$T" "0|resolved|after the restart" \
    "$RC|$(json_get "$OUT" state)|$(json_get "$OUT" value)"
mesh_down

# ============================================ three agents, --replicas 1: OWNER_LOST

dmesh_up 3 --replicas 1
pm 2 create
P=$OUT
W2=$(mstat 2 clients.waiters)
timed_bg lost 3 await "$P" --timeout 30s
need_waiters_on 2 $((W2 + 1)) # n3's subscription, held at the owner
T0=$(now_ms)
kill -KILL "${MESH_PID[2]}"
DEADLINE=$((T0 + 15000))
while :; do
    pm 1 get "$P"
    [[ $ERR == *OWNER_LOST* ]] && break
    [ "$(now_ms)" -lt "$DEADLINE" ] || break
    sleep 0.05
done
LOST_MS=$(($(now_ms) - T0))
expect_eq "--replicas 1, owner killed: a get fails with OWNER_LOST (exit 1)" "1|yes" \
    "$RC|$([[ $ERR == *OWNER_LOST* ]] && echo yes || echo no)"
expect_lt "... promptly (${LOST_MS} ms)" "$LOST_MS" "$TAKEOVER_BOUND_MS"
wait_done 10 lost || true
AW_MS=$(($(done_ms lost) - T0))
expect_eq "... a waiter on another agent fails too (exit 1)" 1 "$(done_rc lost)"
expect_match "... with OWNER_LOST" "OWNER_LOST" "$(cat "$TMP/lost.log")"
expect_lt "... promptly (${AW_MS} ms)" "$AW_MS" "$TAKEOVER_BOUND_MS"
pm 3 resolve "$P" "too late"
expect_match "... and a settle is refused with OWNER_LOST" "OWNER_LOST" "$ERR"
mesh_restart 2
wait_stat 1 mesh.members.alive 3 15 || true
# It serves its space again once it has decided nobody took it over
# (takeover_grace): poll for that, do not sleep through it.
get_until 1 "$P" 15 || true
expect_eq "the owner restarted on its data dir serves its promise again" "0|pending" \
    "$RC|$(json_get "$OUT" state)"
mesh_down

finish
