#!/usr/bin/env bash
# Ownership and in-sync sets decided in a real etcd (issue 11), started here
# on loopback ports and stopped by PID. Three agents, --replicas 2, each with
# a data dir:
#   1. every agent records its new id space in the store, with its backup
#      in sync once it has caught up; writes are accepted then;
#   2. SIGKILL of an owner: its in-sync backup takes its space over by CAS
#      at epoch 2, and every change the owner acknowledged is there;
#   3. the owner's only backup killed (min_in_sync 1): writes to the space
#      are refused with UNAVAILABLE until a new backup has caught up and is
#      recorded, then accepted;
#   4. owner and its only backup killed together: the space waits (every
#      operation on it UNAVAILABLE, never served from an older copy) and
#      comes back when the backup restarts on its data dir (the process
#      before it was the recorded member: what it acknowledged is in the WAL
#      the new one replayed);
#   5. the store down: a space whose owner and in-sync set are healthy keeps
#      serving; a takeover waits (counted in status, logged PM-COORD-WAIT) and
#      happens once the store is back;
#   6. no member of the in-sync set alive: `pmesh space force-owner` makes
#      another agent the owner, serving what it has (PM-COORD-FORCED);
#   7. a mesh with replicas 2 and neither a store nor --unsafe-no-coordination
#      is refused at start.
. "$(dirname "$0")/mesh_lib.sh"
. "$(dirname "$0")/coord_lib.sh"

coord_need_etcd

EPORT=$(free_ports 2)
EP=127.0.0.1:$EPORT
URL=etcd://$EP
PREFIX=/pmesh/takeover$$
export ETCDCTL_API=3
start_etcd() {
bg etcd etcd --name t --data-dir "$TMP/etcd-data" \
    --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
    --listen-peer-urls "http://127.0.0.1:$((EPORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((EPORT + 1))" \
    --initial-cluster "t=http://127.0.0.1:$((EPORT + 1))" --logger zap --log-level error
ETCD_PID=$BG_PID
disown "$ETCD_PID" 2>/dev/null || true # a SIGKILL of it is the test's doing
wait_for 30 etcdctl --endpoints "$EP" --dial-timeout 1s endpoint health ||
    { echo "etcd did not come up" >&2; _lib_dump_logs >&2; exit 1; }
}
start_etcd

# etcdctl against the test's store (record, rec_field: coord_lib.sh).
ectl() { timeout -k 2 10 etcdctl --endpoints "$EP" "$@"; }
in_sync_count() {
    python3 -c 'import json,sys
try: print(len(json.loads(sys.argv[1])["in_sync"]))
except Exception: print(-1)' "$(record "$1")"
}
_in_sync_ge() { [ "$(in_sync_count "$1")" -ge "$2" ]; }
_owner_is() { [ "$(rec_field "$1" owner)" = "$2" ]; }

# The agents as mesh-up would start them, each with a data dir (mesh_restart
# starts one from its command line and adds it to the PIDs stopped at exit).
coord_mesh_dir
HPORT=$(free_ports 1)
for k in 1 2 3; do
    MESH_SOCK[$k]=$MESH_DIR/n$k.sock
    cmd=("$PMESHD" --node "n$k" --socket "$MESH_DIR/n$k.sock"
        --bind "tcp://127.0.0.$k:$MESH_PORT" --seed "tcp://127.0.0.1:$MESH_PORT" --insecure
        --data-dir "$MESH_DIR/n$k.data" --replicas 2 --coordination "$URL"
        --coordination-prefix "$PREFIX" --probe-interval 100ms --log-level info)
    [ "$k" != 1 ] || cmd+=(--http "127.0.0.1:$HPORT") # n1's /metrics
    printf '%q ' "${cmd[@]}" >"$MESH_DIR/n$k.cmd"
    mesh_restart "$k" || { _lib_dump_logs >&2; exit 1; }
done

# ---- 1. records, in-sync sets, writes ------------------------------------------------
for k in 1 2 3; do
    wait_for 15 bash -c "[ -n \"\$(\"$PMESH\" --socket \"${MESH_SOCK[$k]}\" status 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d[\"coordination\"][\"ready\"] or \"\")')\" ]" ||
        true
done
S1=$(primary 1)
S2=$(primary 2)
S3=$(primary 3)
expect_match "n1 knows its id space" "^n1-" "$S1"
expect_eq "its record in etcd names n1 as owner at epoch 1" "n1 1" \
    "$(rec_field "$S1" owner) $(rec_field "$S1" epoch)"
check_fn "... and records a backup in sync once it caught up" wait_for 15 _in_sync_ge "$S1" 1
check_fn "a write on n1 is accepted then" create_ok 1 50 10m
ACKED=()
for i in 1 2 3 4 5; do
    create_ok 1 50 10m
    ACKED+=("$OUT")
done
pm 1 resolve "${ACKED[0]}" "acked-value"
expect_eq "a resolve acknowledged by n1" 0 "$RC"
BACKUP1=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["in_sync"][0]["node"])' \
    "$(record "$S1")")
expect_match "n1's in-sync backup is n2 or n3" "^n[23]$" "$BACKUP1"

# ---- 2. SIGKILL of an owner: takeover by its in-sync backup -------------------------------
kill -9 "${MESH_PID[1]}"
T0=$(now_ms)
B=${BACKUP1#n}
# A get sent to the backup at once waits there (parked) for the takeover.
timed_bg early-get "$B" get "${ACKED[0]}"
check_fn "n1's space is taken over by its in-sync backup $BACKUP1" wait_for 10 _owner_is "$S1" "$BACKUP1"
echo "# takeover recorded $(($(now_ms) - T0)) ms after SIGKILL"
check_fn "a get sent to the backup right after the SIGKILL is answered once it took over" \
    wait_for 10 test -s "$TMP/early-get.done"
expect_eq "... successfully" 0 "$(done_rc early-get)"
expect_match "... with the acknowledged value" '"value":"acked-value"' "$(cat "$TMP/early-get.out")"
expect_eq "... at epoch 2" 2 "$(rec_field "$S1" epoch)"
OTHER=$((5 - B)) # the agent that is neither n1 nor the backup
pm "$OTHER" get "${ACKED[0]}"
expect_match "the acknowledged resolve is there (read through n$OTHER)" '"state":"resolved".*"value":"acked-value"' "$OUT"
lost=0
for id in "${ACKED[@]}"; do
    pm "$B" get "$id" || lost=$((lost + 1))
done
expect_eq "every acknowledged create is at the new owner" 0 "$lost"
expect_eq "n$B logged the takeover" 1 "$([ "$(log_count "$B" PM-COORD-TAKEOVER)" -ge 1 ] && echo 1)"
expect_eq "... as its own takeover, not an operator's force" 0 "$(log_count "$B" PM-COORD-FORCED)"

# ---- 3. the owner's only backup killed: UNAVAILABLE until a new one caught up ---------------
# Now n$B and n$OTHER are alive: n$B's backup is n$OTHER (the only other agent).
SB=$(primary "$B")
check_fn "n$B's own space has n$OTHER in sync" wait_for 10 _in_sync_ge "$SB" 1
kill -9 "${MESH_PID[$OTHER]}"
_refused() {
    pm "$B" create --timeout 10m
    [ "$RC" != 0 ] && [[ $ERR == *UNAVAILABLE* ]]
}
check_fn "with its only backup gone, n$B refuses writes with UNAVAILABLE" wait_for 10 _refused
expect_match "... saying why" "backups? recorded in sync, min_in_sync is 1" "$ERR"
expect_eq "... after recording the smaller in-sync set" 0 "$(in_sync_count "$SB")"
mesh_restart 1 # a new process on n1's data dir: a new backup
check_fn "once the new backup caught up, writes are accepted again" create_ok "$B" 50 10m
expect_eq "... and it is recorded in sync" 1 "$(in_sync_count "$SB")"

# ---- 4. owner and its only backup killed together: the space waits ------------------------
# n$B owns SB with backup n1 (the restarted one), and S1 unless it gave S1
# back to n1's new process once that was in sync (R8, node/isr.h). Bring
# n$OTHER back as the survivor, then kill n$B and n1 together.
mesh_restart "$OTHER"
check_fn "n$OTHER is back" wait_state "$OTHER" "n$B" alive 10
ID4=${ACKED[1]}
pm "$B" resolve "$ID4" "before-both-died"
expect_eq "a resolve acknowledged by n$B (its backup n1 in sync)" 0 "$RC"
S1_OWNER=$(rec_field "$S1" owner)
kill -9 "${MESH_PID[$B]}" "${MESH_PID[1]}"
_unavail() {
    pm "$OTHER" get "$ID4"
    [ "$RC" != 0 ] && [[ $ERR == *UNAVAILABLE* ]]
}
check_fn "with owner and backup dead, an operation on the space is UNAVAILABLE" wait_for 10 _unavail
expect_match "... naming why" "no member of its in-sync set" "$ERR"
expect_eq "... and nobody took it over" "$S1_OWNER" "$(rec_field "$S1" owner)"
mesh_restart 1 # the backup restarts on its data dir
check_fn "the backup's new process takes the space over" wait_for 15 _owner_is "$S1" n1
_got_value() {
    pm "$OTHER" get "$ID4"
    [ "$RC" = 0 ]
}
wait_for 10 _got_value || true
expect_match "... with the change acknowledged before both died" '"value":"before-both-died"' "$OUT"

# ---- 5. the store down ----------------------------------------------------------------
# Alive: n1 (a new process; it took over n$B's spaces) and n$OTHER.
S1N=$(primary 1)
SO=$(primary "$OTHER")
check_fn "n1's new space has a backup in sync" wait_for 15 _in_sync_ge "$S1N" 1
check_fn "n$OTHER's new space has a backup in sync" wait_for 15 _in_sync_ge "$SO" 1
kill -9 "$ETCD_PID"
wait_exit "$ETCD_PID" 5 || true
check_fn "with the store down, n1 (owner and backup healthy) still accepts writes" create_ok 1 50 10m
ID5=$OUT
expect_eq "... without waiting for the store" 0 "$RC"
kill -9 "${MESH_PID[$OTHER]}"
_waiting() { [ "$(mstat 1 coordination.waiting)" -ge 1 ] 2>/dev/null; }
check_fn "n$OTHER's takeover waits for the store (status coordination.waiting)" wait_for 10 _waiting
expect_eq "... store_up is false" false "$(mstat 1 coordination.store_up)"
expect_eq "... logged PM-COORD-WAIT" 1 "$([ "$(log_count 1 PM-COORD-WAIT)" -ge 1 ] && echo 1)"
METRICS=$(curl -s --max-time 5 "http://127.0.0.1:$HPORT/metrics")
expect_match "... /metrics: the store is down" $'\npmesh_coordination_store_up 0' "$METRICS"
expect_match "... /metrics: a change waits" $'\npmesh_coordination_waiting [1-9]' "$METRICS"
start_etcd
check_fn "once the store is back, n1 takes n$OTHER's space over" wait_for 15 _owner_is "$SO" n1
_store_up() { [ "$(mstat 1 coordination.store_up)" = true ]; }
check_fn "... and says the store is up" wait_for 10 _store_up

# ---- 6. force-owner --------------------------------------------------------------------
# Kill n1 too: nobody in sync is left for n1's spaces. n$B comes back (a new
# process: in no in-sync set) and is forced to own S1.
kill -9 "${MESH_PID[1]}"
mesh_restart "$B"
_s1_unavailable() {
    pm "$B" get "$ID4"
    [ "$RC" != 0 ] && [[ $ERR == *UNAVAILABLE* ]]
}
check_fn "n$B alone: S1 is UNAVAILABLE (owner n1 dead, nobody in sync alive)" \
    wait_for 15 _s1_unavailable
pm "$B" space force-owner "$S1"
expect_eq "force-owner without --accept-data-loss is refused (usage)" 64 "$RC"
pm "$B" space force-owner "$S1" --accept-data-loss
expect_eq "force-owner --accept-data-loss: done" 0 "$RC"
expect_match "... saying what it costs" "FORCED.*lost" "$ERR"
expect_eq "the store names n$B the owner" "n$B" "$(rec_field "$S1" owner)"
_forced_served() {
    pm "$B" get "$ID4"
    [ "$RC" = 0 ]
}
check_fn "n$B serves S1 from its own copy" wait_for 10 _forced_served
expect_match "... which has what it acknowledged itself before it died" \
    '"value":"before-both-died"' "$OUT"
expect_eq "... logged PM-COORD-FORCED" 1 "$([ "$(log_count "$B" PM-COORD-FORCED)" -ge 1 ] && echo 1)"

# ---- 7. no store, no flag: refused ---------------------------------------------------------
run "$PMESHD" --node x --socket "$TMP/x.sock" --bind "tcp://127.0.0.9:$MESH_PORT" --insecure \
    --replicas 2
expect_eq "replicas 2 without a store or --unsafe-no-coordination: refused (exit 78)" 78 "$RC"
expect_match "... saying what to do" "coordination.*unsafe-no-coordination" "$ERR"

finish
