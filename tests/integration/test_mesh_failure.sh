#!/usr/bin/env bash
# test_mesh_failure.sh - failure detection with real agents and real signals:
#
#  - SIGSTOP an agent for less than the suspicion timeout, several times: it
#    is never declared dead, and a request to it waits for the verdict
#    instead of failing;
#  - SIGSTOP it for longer: every member declares it dead within a bound,
#    its waiters get OWNER_LOST; on SIGCONT it refutes (higher incarnation),
#    is alive again everywhere, and its promises are reachable again;
#  - a network partition made with two network namespaces and a veth pair
#    (addresses from 192.0.2.0/24, TEST-NET-1, only inside our namespaces):
#    each side declares the other dead and keeps working; the link comes
#    back and the mesh converges. Where network namespaces cannot be made
#    (no root, no iproute2, no veth), each of its cases is reported skipped.
#
#   BUILD=build tests/integration/test_mesh_failure.sh      (netns part: root)
. "$(dirname "$0")/mesh_lib.sh"
build_meshpoke

# Default timers: suspicion min = 3 x 200 ms = 600 ms; a silent member is
# suspected after its probe period and dead ~600 ms later (~1.4 s, see
# mesh/swim.c). A pause well under 600 ms must never be a death; a pause of
# seconds must be one, within this generous bound:
DETECT_BOUND_MS=5000
SHORT_PAUSE=0.5
# A partition is slower to call: half the relays of every indirect probe are
# cut off too, their nacks go missing, and Lifeguard stretches the probe
# period of the members that asked (measured 2-3.5 s).
PARTITION_BOUND_MS=8000

mesh_up 3

# ---- short pauses: never dead ------------------------------------------------------

pm 2 create
P=$OUT
W2=$(mstat 2 clients.waiters)
timed_bg across 3 await "$P" --timeout 30s
# The await is held at n2 (n3's subscription) before the first pause.
need_waiters_on 2 $((W2 + 1))
DEATHS0="$(mstat 1 mesh.deaths_declared) $(mstat 3 mesh.deaths_declared)"
for i in 1 2 3 4 5; do
    # (read before the pause: nothing but the pause itself may take its time)
    [ "$i" = 3 ] && REL0=$(mstat 1 mesh.relayed)
    kill -STOP "${MESH_PID[2]}"
    if [ "$i" = 3 ]; then
        # A request to a member that is (at most) suspected waits for it.
        timed_bg during 1 get "$P"
    fi
    # The pause itself is the behaviour under test: a fixed, short time.
    sleep "$SHORT_PAUSE"
    # (raw status, parsed after SIGCONT: the pause stays SHORT_PAUSE long)
    [ "$i" = 3 ] && ST_DURING=$("$PMESH" --socket "${MESH_SOCK[1]}" status 2>/dev/null)
    kill -CONT "${MESH_PID[2]}"
    # Pauses 1.2 s apart: a pattern of short stalls, not one long one.
    sleep 1.2
done
wait_done 5 during || true
REL_DURING=$(json_get "$ST_DURING" mesh.relayed)
if [[ $REL_DURING =~ ^[0-9]+$ ]] && [ "$REL_DURING" -gt "$REL0" ]; then
    expect_eq "a get sent to n2 while it was stopped succeeds once it runs again" \
        "0 pending" "$(done_rc during) $(json_get "$(cat "$TMP/during.out")" state)"
else
    skip "a get sent to n2 while it was stopped succeeds once it runs again" \
        "the get reached n1 only after n2's ${SHORT_PAUSE}s pause (a slow machine)"
fi
expect_eq "5 pauses of ${SHORT_PAUSE}s: no member declared n2 dead" "$DEATHS0" \
    "$(mstat 1 mesh.deaths_declared) $(mstat 3 mesh.deaths_declared)"
expect_eq "... nobody holds anyone dead" "0 0 0" \
    "$(mstat 1 mesh.members.dead) $(mstat 2 mesh.members.dead) $(mstat 3 mesh.members.dead)"
expect_eq "... no PM-PEER-DEAD in any log" 0 "$(cat "$MESH_DIR"/n*.log | grep -c PM-PEER-DEAD || true)"
expect_eq "... n2 alive in n1's and n3's view" "alive alive" \
    "$(member_field 1 n2 state) $(member_field 3 n2 state)"
echo "# short pauses: suspicions n1=$(mstat 1 mesh.suspicions) n3=$(mstat 3 mesh.suspicions), n2 refuted $(mstat 2 mesh.refutations) time(s)"
expect_eq "... an await across the pauses is still waiting" "" "$(done_rc across)"
pm 1 resolve "$P" "still here"
wait_done 5 across || true
expect_eq "... and gets the value afterwards" "0 still here" "$(done_rc across) $(cat "$TMP/across.out")"

# ---- a long pause: dead, then refutes and rejoins --------------------------------------

pm 2 create
P=$OUT
pm 2 create
KEEP=$OUT
W2=$(mstat 2 clients.waiters)
timed_bg lost1 1 await "$P" --timeout 20s
timed_bg lost3 3 await "$P" --timeout 20s
need_waiters_on 2 $((W2 + 2)) # n1's and n3's subscriptions
INC_SELF0=$(mstat 2 mesh.incarnation)
INC_VIEW0=$(member_field 1 n2 incarnation)
REF0=$(mstat 2 mesh.refutations)
T0=$(now_ms)
kill -STOP "${MESH_PID[2]}"
dead=1
for k in 1 3; do
    wait_state $k n2 dead 10 || dead=0
done
DETECT=$(($(now_ms) - T0))
expect_eq "SIGSTOP n2 for long: n1 and n3 declare it dead" 1 "$dead"
echo "# SIGSTOP -> dead in every view: ${DETECT} ms"
expect_lt "... within ${DETECT_BOUND_MS} ms (took ${DETECT} ms)" "$DETECT" "$DETECT_BOUND_MS"
wait_done 5 lost1 lost3 || true
expect_eq "... its waiters on n1 and n3 get OWNER_LOST" "1 1 2" \
    "$(done_rc lost1) $(done_rc lost3) $(cat "$TMP/lost1.log" "$TMP/lost3.log" | grep -c OWNER_LOST)"
# The scenario: n2 stays stopped a while after the verdict, so its return
# refutes a death everyone has settled on.
sleep 1
T1=$(now_ms)
kill -CONT "${MESH_PID[2]}"
back=1
for k in 1 3; do
    wait_state $k n2 alive 10 || back=0
done
BACK=$(($(now_ms) - T1))
expect_eq "SIGCONT: n2 is alive again in n1's and n3's view" 1 "$back"
echo "# SIGCONT -> alive again in every view: ${BACK} ms"
expect_lt "... within 5000 ms (took ${BACK} ms)" "$BACK" 5000
expect_lt "... n2 refuted (its refutations rose)" "$REF0" "$(mstat 2 mesh.refutations)"
expect_lt "... with a higher incarnation of its own" "$INC_SELF0" "$(mstat 2 mesh.incarnation)"
expect_lt "... which n1 holds" "$INC_VIEW0" "$(member_field 1 n2 incarnation)"
expect_lt "... and n3 holds" "$INC_VIEW0" "$(member_field 3 n2 incarnation)"
wait_stat 2 mesh.members.alive 3 5 || true
expect_eq "... n2 sees 3 alive" 3 "$(mstat 2 mesh.members.alive)"
pm 1 get "$KEEP"
expect_eq "n2's older promise is reachable from n1 again" "0 pending" "$RC $(json_get "$OUT" state)"
pm 2 create
P=$OUT
# (n2 may still hold the subscriptions of the awaits that got OWNER_LOST:
# wait for n3's own waiter and its subscription leaving)
W3=$(mstat 3 clients.waiters)
R3=$(mstat 3 mesh.relayed)
timed_bg after3 3 await "$P" --timeout 10s
need_waiters_on 3 $((W3 + 1))
need_relayed 3 $((R3 + 1))
pm 1 resolve "$P" "rejoined"
wait_done 10 after3 || true
expect_eq "after rejoining: create on n2, resolve from n1, await on n3" "0 rejoined" \
    "$(done_rc after3) $(cat "$TMP/after3.out")"
mesh_down

# ---- a network partition with namespaces ----------------------------------------------

NS_A=pm-a-$$
NS_B=pm-b-$$
VA=pmva$$
VB=pmvb$$
ns_cleanup() {
    ip link del "$VA" 2>/dev/null || true # only if it never left this namespace
    ip netns del "$NS_A" 2>/dev/null || true
    ip netns del "$NS_B" 2>/dev/null || true
}
# The namespaces go first; the agents inside keep them alive until lib.sh's
# cleanup stops the agents, and the veth pair goes with them. (set +e: under
# set -e, "(exit 1)" after a failed check would end the trap before
# _lib_cleanup, leaving the agents running and $TMP behind.)
trap 'rc=$?; set +e; ns_cleanup; (exit $rc); _lib_cleanup' EXIT

# ns_setup: the two namespaces joined by a veth pair; 1 at the first step
# this machine refuses (not root, no netns, no veth).
ns_setup() {
    ip netns add "$NS_A" || return 1
    ip netns add "$NS_B" || return 1
    ip link add "$VA" type veth peer name "$VB" || return 1
    ip link set "$VA" netns "$NS_A" || return 1
    ip link set "$VB" netns "$NS_B" || return 1
    ip -n "$NS_A" addr add 192.0.2.1/24 dev "$VA" || return 1
    ip -n "$NS_A" addr add 192.0.2.2/24 dev "$VA" || return 1
    ip -n "$NS_B" addr add 192.0.2.3/24 dev "$VB" || return 1
    ip -n "$NS_B" addr add 192.0.2.4/24 dev "$VB" || return 1
    ip -n "$NS_A" link set lo up || return 1
    ip -n "$NS_B" link set lo up || return 1
    ip -n "$NS_A" link set "$VA" up || return 1
    ip -n "$NS_B" link set "$VB" up || return 1
}
# Every case of the partition part, by name, for the report when it cannot run.
PARTITION_CASES=(
    "netns: 4 agents in two namespaces form one mesh"
    "partition: each side declares the other dead"
    "partition: ... within ${PARTITION_BOUND_MS} ms"
    "partition: ... each side still sees its own half alive"
    "partition: ... an await across the cut gets OWNER_LOST"
    "partition: ... side A still works"
    "partition: ... side B still works"
    "healed: every agent sees all 4 alive again"
    "healed: ... nobody holds anyone dead"
    "healed: ... p3's promise from before the cut is reachable from p1"
    "healed: ... resolved from p4, awaited on p2"
)
skip_partition() { # REASON
    local c
    for c in "${PARTITION_CASES[@]}"; do
        skip "$c" "$1"
    done
    finish
}
if ! command -v ip >/dev/null 2>&1; then
    skip_partition "no ip command (iproute2) to make network namespaces"
fi
if ! ns_setup 2>"$TMP/netns.err"; then
    skip_partition "cannot make network namespaces here: $(head -n 1 "$TMP/netns.err" | head -c 100)"
fi

# p1, p2 in A; p3, p4 in B; everyone seeds through p1. The agents' local
# sockets are files, reachable from here whatever namespace the agent is in.
NSOF=("" "$NS_A" "$NS_A" "$NS_B" "$NS_B")
[ -f "$TMP/nskeys/mesh.key" ] || "$PMESHD" --keygen "$TMP/nskeys" >/dev/null
for k in 1 2 3 4; do
    MESH_SOCK[$k]=$TMP/p$k.sock
    bg "p$k" ip netns exec "${NSOF[$k]}" "$PMESHD" --node "p$k" --socket "$TMP/p$k.sock" \
        --bind "tcp://192.0.2.$k:7480" --seed "tcp://192.0.2.1:7480" --log-level info \
        --mesh-key-dir "$TMP/nskeys" --replicas 1
    MESH_PID[$k]=$BG_PID
done
joined=1
for k in 1 2 3 4; do
    wait_stat $k mesh.members.alive 4 15 || joined=0
done
expect_eq "netns: 4 agents in two namespaces form one mesh" 1 "$joined"
pm 3 create
PB=$OUT
pm 1 create
PA=$OUT
W3=$(mstat 3 clients.waiters)
timed_bg xa 1 await "$PB" --timeout 20s
need_waiters_on 3 $((W3 + 1)) # p1's subscription, held at p3 before the cut

T0=$(now_ms)
ip -n "$NS_A" link set "$VA" down
split=1
for k in 1 2; do for j in 3 4; do
    wait_state $k p$j dead 10 || split=0
done; done
for k in 3 4; do for j in 1 2; do
    wait_state $k p$j dead 10 || split=0
done; done
SPLIT=$(($(now_ms) - T0))
expect_eq "partition: each side declares the other dead" 1 "$split"
echo "# partition -> both sides see the other dead: ${SPLIT} ms"
expect_lt "... within ${PARTITION_BOUND_MS} ms (took ${SPLIT} ms)" "$SPLIT" "$PARTITION_BOUND_MS"
expect_eq "... each side still sees its own half alive" "2 2 2 2" \
    "$(mstat 1 mesh.members.alive) $(mstat 2 mesh.members.alive) $(mstat 3 mesh.members.alive) $(mstat 4 mesh.members.alive)"
wait_done 5 xa || true
expect_eq "... an await across the cut gets OWNER_LOST" "1" "$(done_rc xa)"
expect_match "... (message)" "OWNER_LOST" "$(cat "$TMP/xa.log")"
pm 2 resolve "$PA" "side a"
pm 1 await "$PA" --timeout 2s
expect_eq "... side A still works (p1's promise, resolved from p2)" "0 side a" "$RC $OUT"
pm 4 create
PB2=$OUT
pm 3 resolve "$PB2" "side b"
pm 4 await "$PB2" --timeout 2s
expect_eq "... side B still works (p4's promise, resolved from p3)" "0 side b" "$RC $OUT"

# The scenario: the partition lasts a while after both sides gave up on
# each other, so the heal is a rejoin, not a blip.
sleep 1
T1=$(now_ms)
ip -n "$NS_A" link set "$VA" up
healed=1
for k in 1 2 3 4; do
    wait_stat $k mesh.members.alive 4 25 || healed=0
done
HEAL=$(($(now_ms) - T1))
expect_eq "healed: every agent sees all 4 alive again" 1 "$healed"
echo "# heal -> all 4 see 4 alive: ${HEAL} ms"
expect_eq "... nobody holds anyone dead" "0 0 0 0" \
    "$(mstat 1 mesh.members.dead) $(mstat 2 mesh.members.dead) $(mstat 3 mesh.members.dead) $(mstat 4 mesh.members.dead)"
pm 1 get "$PB"
expect_eq "... p3's promise from before the cut is reachable from p1" "0 pending" \
    "$RC $(json_get "$OUT" state)"
W2=$(mstat 2 clients.waiters)
R2=$(mstat 2 mesh.relayed)
timed_bg xb 2 await "$PB" --timeout 10s
need_waiters_on 2 $((W2 + 1))
need_relayed 2 $((R2 + 1))
pm 4 resolve "$PB" "healed"
wait_done 10 xb || true
expect_eq "... resolved from p4, awaited on p2" "0 healed" "$(done_rc xb) $(cat "$TMP/xb.out")"
finish
