#!/usr/bin/env bash
# R8, the hand-back (issue 11; node/isr.h), on real processes against a real
# etcd started here on a loopback port (plain http; stopped by PID):
# n1 and n2 (--replicas 2: each the other's backup) share a store. n1 is
# SIGKILLed and stays down past failure detection, so n2 takes its id space
# over (R3: the record names n2). n1 restarts on its data dir: its new
# process becomes n2's backup, is recorded in sync for that space, and n2
# drains it (writes to it refused until everything produced for it is
# acknowledged) and gives it back by CAS (PM-COORD-HANDBACK at n2,
# PM-COORD-HANDED-BACK at n1); n1 mints there again (PM-MINT-RESUMED), so
# its next create lands there, not in its new primary. Meanwhile resolves
# of that space's promises go through n2 (retried while refused): every
# acknowledged create and resolve is readable through both agents after.
. "$(dirname "$0")/mesh_lib.sh"
. "$(dirname "$0")/coord_lib.sh"

coord_need_etcd
EPORT=$(free_ports 1)
EP=127.0.0.1:$EPORT
PREFIX=/pmesh/handback$$
export ETCDCTL_API=3
bg etcd etcd --name t --data-dir "$TMP/etcd-data" \
    --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
    --listen-peer-urls "http://127.0.0.1:$((EPORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((EPORT + 1))" \
    --initial-cluster "t=http://127.0.0.1:$((EPORT + 1))" --logger zap --log-level error
ectl() { timeout -k 2 10 etcdctl --endpoints "http://$EP" --dial-timeout 2s "$@"; }
wait_for 30 ectl endpoint health || { echo "etcd did not come up" >&2; _lib_dump_logs >&2; exit 1; }

_owner_is() { [ "$(rec_field "$1" owner)" = "$2" ] && [ "$(rec_field "$1" epoch)" = "$3" ]; }

coord_mesh_dir
for k in 1 2; do
    MESH_SOCK[$k]=$MESH_DIR/n$k.sock
    cmd=("$PMESHD" --node "n$k" --socket "$MESH_DIR/n$k.sock"
        --bind "tcp://127.0.0.$k:$MESH_PORT" --seed "tcp://127.0.0.1:$MESH_PORT" --insecure
        --data-dir "$MESH_DIR/n$k.data" --replicas 2 --coordination "etcd://$EP"
        --coordination-prefix "$PREFIX" --probe-interval 100ms --takeover-grace 10s
        --log-level info)
    printf '%q ' "${cmd[@]}" >"$MESH_DIR/n$k.cmd"
    mesh_restart "$k" || { _lib_dump_logs >&2; exit 1; }
done
for k in 1 2; do wait_for 15 _ready "$k" || true; done
expect_eq "n1 read the store" true "$(mstat 1 coordination.ready)"
S=$(primary 1)
expect_match "n1 records its id space" "^n1-" "$S"

# Promises in n1's space: two resolved, the rest pending (resolved later
# through n2, across the hand-back).
create_many 1 12
expect_eq "twelve creates acknowledged by n1 (n2 recorded in sync)" 12 "${#IDS[@]}"
expect_eq "... all in n1's space $S" "$S" "$(printf '%s\n' "${IDS[@]%%~*}" | sort -u)"
pm 1 resolve "${IDS[0]}" "before-1"
expect_eq "a resolve acknowledged" 0 "$RC"
pm 1 resolve "${IDS[1]}" "before-2"
expect_eq "another resolve acknowledged" 0 "$RC"

# ---- n1 down past failure detection: n2 takes its space over --------------------------
kill -9 "${MESH_PID[1]}"
wait_exit "${MESH_PID[1]}" 10 || true
check=ok
wait_for 20 _owner_is "$S" n2 2 || check="$(record "$S")"
expect_eq "n1 down past failure detection: the store names n2 owner of $S at epoch 2" ok "$check"
pm 2 get "${IDS[0]}"
expect_match "n2 serves it: the acknowledged resolve is there" '"value":"before-1"' "$OUT"

# ---- n1 restarts: n2 drains the space and gives it back ---------------------------------
mesh_restart 1 || { _lib_dump_logs >&2; exit 1; }
wait_for 15 _ready 1 || true
# Resolves through n2 while the hand-back goes on: each retried while
# refused (the drain: UNAVAILABLE), relayed to n1 once it has moved.
ACKED=()
for i in $(seq 2 11); do
    for try in $(seq 50); do
        pm 2 resolve "${IDS[$i]}" "during-$i"
        [ "$RC" = 0 ] && { ACKED+=("$i"); break; }
        sleep 0.2
    done
    sleep 0.1
done
expect_eq "ten resolves through n2 acknowledged across the restart" 10 "${#ACKED[@]}"
check=ok
wait_for 30 _owner_is "$S" n1 3 || check="$(record "$S")"
expect_eq "the store names n1 owner of $S again, at epoch 3 (given back)" ok "$check"
expect_eq "... n1's new process (the record's pid is n1's current one)" \
    "$(mstat 1 coordination.pid)" "$(rec_field "$S" owner_pid)"
_logged() { [ "$(log_count "$1" "$2")" -ge 1 ]; }
wait_for 10 _logged 2 "PM-COORD-HANDBACK id space $S" || true
expect_eq "n2 logged the hand-back (drain, CAS, done)" "1 1 1" \
    "$(for t in PM-COORD-HANDBACK-DRAIN PM-COORD-HANDBACK-CAS "PM-COORD-HANDBACK id space $S"; do
        [ "$(log_count 2 "$t")" -ge 1 ] && echo -n 1 || echo -n 0
        [ "$t" = "PM-COORD-HANDBACK id space $S" ] || echo -n " "
    done)"
expect_eq "n1 logged PM-COORD-HANDED-BACK" 1 "$([ "$(log_count 1 "PM-COORD-HANDED-BACK id space $S")" -ge 1 ] && echo 1)"
wait_for 15 _logged 1 "PM-MINT-RESUMED id space $S" || true
expect_eq "n1 mints in $S again (PM-MINT-RESUMED)" 1 \
    "$([ "$(log_count 1 "PM-MINT-RESUMED id space $S")" -ge 1 ] && echo 1)"
create_ok 1
expect_eq "... its next create lands there, not in its new primary" "$S" "${OUT%%~*}"
IDS+=("$OUT")

# ---- nothing acknowledged is lost -------------------------------------------------------
for k in 1 2; do
    lost=0
    for id in "${IDS[@]}"; do
        pm "$k" get "$id" || lost=$((lost + 1))
    done
    expect_eq "every acknowledged create is readable through n$k" 0 "$lost"
    bad=0
    pm "$k" get "${IDS[0]}"
    [[ $OUT == *'"value":"before-1"'* ]] || bad=$((bad + 1))
    for i in "${ACKED[@]}"; do
        pm "$k" get "${IDS[$i]}"
        [[ $OUT == *'"state":"resolved"'*'"value":"during-'$i'"'* ]] || {
            bad=$((bad + 1))
            echo "# n$k ${IDS[$i]}: $OUT $ERR"
        }
    done
    expect_eq "every acknowledged resolve reads back with its value through n$k" 0 "$bad"
done
finish
