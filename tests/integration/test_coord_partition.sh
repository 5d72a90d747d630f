#!/usr/bin/env bash
# A network split with a configuration store (issue 11): two network
# namespaces joined by a veth pair, as in test_mesh_failure.sh. Side A holds
# p1, p2 and etcd; side B holds p3 alone. --replicas 2, min_in_sync 1. The
# link goes down:
#   - the minority (p3) refuses writes with UNAVAILABLE: its backup is gone
#     and it cannot record the smaller in-sync set (the store is on side A);
#   - the majority takes p3's space over by CAS (its in-sync backup is on
#     side A), and keeps writing once its own spaces have a backup in sync;
#   - after healing, p3 learns the newer epoch from the store and stops
#     serving its old space; every change acknowledged before or during the
#     split is there.
# Skipped (said so) where namespaces cannot be made.
. "$(dirname "$0")/mesh_lib.sh"
. "$(dirname "$0")/coord_lib.sh"

coord_need_etcd

NS_A=pmca-$$
NS_B=pmcb-$$
VA=pmca$$
VB=pmcb$$
ns_cleanup() {
    ip link del "$VA" 2>/dev/null || true
    ip netns del "$NS_A" 2>/dev/null || true
    ip netns del "$NS_B" 2>/dev/null || true
}
# set +e first: under errexit, (exit $rc) would end the trap before the cleanup
trap 'rc=$?; ns_cleanup; set +e; (exit $rc); _lib_cleanup' EXIT
if ! ip netns add "$NS_A" 2>"$TMP/netns.err"; then
    echo "# SKIP: no network namespaces here ($(head -c 100 "$TMP/netns.err"))"
    FINISHED=1
    echo "0 passed, 0 failed (skipped)"
    exit 0
fi
ip netns add "$NS_B"
ip link add "$VA" type veth peer name "$VB"
ip link set "$VA" netns "$NS_A"
ip link set "$VB" netns "$NS_B"
ip -n "$NS_A" addr add 192.0.2.1/24 dev "$VA"
ip -n "$NS_A" addr add 192.0.2.2/24 dev "$VA"
ip -n "$NS_B" addr add 192.0.2.3/24 dev "$VB"
for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
ip -n "$NS_A" link set "$VA" up
ip -n "$NS_B" link set "$VB" up

EP=192.0.2.1:2379
PREFIX=/pmesh/split$$
bg etcd ip netns exec "$NS_A" etcd --name t --data-dir "$TMP/etcd-data" \
    --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
    --listen-peer-urls "http://192.0.2.1:2380" --initial-advertise-peer-urls "http://192.0.2.1:2380" \
    --initial-cluster "t=http://192.0.2.1:2380" --logger zap --log-level error
ectl() { timeout -k 2 10 ip netns exec "$NS_A" etcdctl --endpoints "$EP" --dial-timeout 1s "$@"; }
export ETCDCTL_API=3
wait_for 30 ectl endpoint health || { echo "etcd did not come up" >&2; _lib_dump_logs >&2; exit 1; }

in_sync_nodes() {
    python3 -c 'import json,sys
try: print(",".join(m["node"] for m in json.loads(sys.argv[1])["in_sync"]))
except Exception: print("?")' "$(record "$1")"
}
_in_sync_any() { [ -n "$(in_sync_nodes "$1")" ] && [ "$(in_sync_nodes "$1")" != "?" ]; }
_owner_is() { [ "$(rec_field "$1" owner)" = "$2" ]; }

NSOF=("" "$NS_A" "$NS_A" "$NS_B")
"$PMESHD" --keygen "$TMP/keys" >/dev/null
for k in 1 2 3; do
    MESH_SOCK[$k]=$TMP/p$k.sock
    bg "p$k" ip netns exec "${NSOF[$k]}" "$PMESHD" --node "p$k" --socket "$TMP/p$k.sock" \
        --bind "tcp://192.0.2.$k:7480" --seed "tcp://192.0.2.1:7480" --log-level info \
        --mesh-key-dir "$TMP/keys" --replicas 2 --coordination "etcd://$EP" \
        --coordination-prefix "$PREFIX"
    MESH_PID[$k]=$BG_PID
done
joined=1
for k in 1 2 3; do wait_stat "$k" mesh.members.alive 3 15 || joined=0; done
expect_eq "3 agents in two namespaces form one mesh" 1 "$joined"
S3=$(primary 3)
check_fn "p3's space has a backup in sync" wait_for 15 _in_sync_any "$S3"
BK=$(in_sync_nodes "$S3")
expect_match "... on side A" "^p[12]$" "$BK"
check_fn "p3 accepts writes before the split" create_ok 3 60 10m
P3=$OUT
pm 3 resolve "$P3" "before-split"
expect_eq "... and acknowledges a resolve" 0 "$RC"

ip -n "$NS_A" link set "$VA" down
T0=$(now_ms)
_p3_refuses() {
    CMD_TIMEOUT=10 pm 3 create --timeout 10m
    [ "$RC" != 0 ] && [[ $ERR == *UNAVAILABLE* ]]
}
check_fn "the minority (p3) refuses writes with UNAVAILABLE" wait_for 15 _p3_refuses
echo "# minority refusing writes $(($(now_ms) - T0)) ms after the cut: $ERR"
check_fn "the majority takes p3's space over (its backup $BK, by CAS)" wait_for 15 _owner_is "$S3" "$BK"
expect_eq "... at epoch 2" 2 "$(rec_field "$S3" epoch)"
B=${BK#p}
check_fn "the majority writes on (p1)" create_ok 1 60 10m
PA1=$OUT
check_fn "the majority writes on (p2)" create_ok 2 60 10m
pm "$B" resolve "$PA1" "during-split"
expect_eq "... and acknowledges a resolve" 0 "$RC"
pm "$B" get "$P3"
expect_match "p3's change acknowledged before the split is at its new owner" \
    '"value":"before-split"' "$OUT"
pm 3 resolve "$P3" "minority-write"
expect_ne "the minority does not acknowledge a change to its old space" 0 "$RC"

ip -n "$NS_A" link set "$VA" up
healed=1
for k in 1 2 3; do wait_stat "$k" mesh.members.alive 3 25 || healed=0; done
expect_eq "healed: every agent sees all 3 alive" 1 "$healed"
# (by the store's watch, by gossip of the new owner's claim, or by the new
# owner refusing its records: whichever comes first)
_p3_moved() { [ "$(log_count_p 3 'PM-COORD-MOVED\|PM-SPACE-MOVED\|PM-FENCED')" -ge 1 ]; }
log_count_p() { grep -c -- "$2" "$TMP/p$1.log" 2>/dev/null || true; }
check_fn "p3 learns the newer epoch from the store and stops serving its old space" \
    wait_for 15 _p3_moved
_p3_reads() {
    pm 3 get "$P3"
    [ "$RC" = 0 ] && [[ $OUT == *'"value":"before-split"'* ]]
}
check_fn "through p3, its old promise has the acknowledged value (served by $BK)" \
    wait_for 15 _p3_reads
pm 3 get "$PA1"
expect_match "... and the change acknowledged by the majority during the split" \
    '"value":"during-split"' "$OUT"
finish
