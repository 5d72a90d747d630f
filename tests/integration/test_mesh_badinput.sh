#!/usr/bin/env bash
# test_mesh_badinput.sh - what a stranger or a confused peer can send to an
# agent's mesh port, sent with tests/integration/meshpoke.c (built here):
#
#  - malformed frames (random bytes, a truncated envelope, a wrong version, a
#    multi-part message, no sender, empty, a batch holding garbage, a batch
#    holding a batch), and a flood of them;
#  - a well-formed request from a node that is not a member;
#  - a SWIM message that fails validation;
#  - a SWIM message from a member at a stale incarnation (carrying a rumor);
#  - a forged `dead` about a live member, from a non-member;
#  - a settle relayed to an agent that keeps a copy of the promise (its
#    owner's backup) but does not serve its space.
#
# Each must be dropped, logged and counted; nothing a stranger sends may
# change a live member's standing or fail a request that waits on it. A
# forged death under a member's name is news like any other (a waiter on
# the victim's promises may get OWNER_LOST, as for a real death); the
# victim refutes (its incarnation rises) and is alive again everywhere;
# and the mesh keeps working afterwards.
#
#   BUILD=build tests/integration/test_mesh_badinput.sh
. "$(dirname "$0")/mesh_lib.sh"
build_meshpoke

mesh_up 3 --insecure # raw frames from meshpoke carry no CURVE keys (test_curve.sh covers CURVE)
EP1=${MESH_EP[1]}

# lines K: lines in nK's log so far. new_warns K SINCE: warn/error lines after SINCE.
lines() { wc -l <"$MESH_DIR/n$1.log"; }
new_warns() { tail -n +$(($2 + 1)) "$MESH_DIR/n$1.log" | grep -c -E ' (warn|error) ' || true; }

# A request waiting on n2's promise at n1, all along: bad input must not fail it.
pm 2 create
P=$OUT
timed_bg waiter 1 await "$P" --timeout 60s
need_waiters_on 2 1 # n1's subscription, held at the owner

# ---- malformed frames ---------------------------------------------------------------

BAD0=$(mstat 1 mesh.bad_frames)
LOG0=$(log_count 1 PM-PEER-BAD-FRAME)
run "$MESHPOKE" garbage "$EP1"
SENT=$OUT
expect_eq "meshpoke sent 8 malformed frames (2 of them batches)" "0 8" "$RC $SENT"
wait_stat 1 mesh.bad_frames $((BAD0 + 8)) 3 || true
expect_eq "malformed frames: each counted in mesh.bad_frames" $((BAD0 + 8)) "$(mstat 1 mesh.bad_frames)"
expect_eq "... each logged (PM-PEER-BAD-FRAME)" $((LOG0 + 8)) "$(log_count 1 PM-PEER-BAD-FRAME)"
pm 1 status
expect_eq "... n1 still answers" 0 "$RC"
expect_eq "... and still sees 3 alive" 3 "$(mstat 1 mesh.members.alive)"

# A flood: counted, the log rate-limited, the agent responsive.
run "$MESHPOKE" garbage "$EP1" 500
expect_eq "a flood of 4000 malformed frames is sent" "0 4000" "$RC $OUT"
wait_stat 1 mesh.bad_frames $((BAD0 + 4008)) 5 || true
expect_eq "... all counted" $((BAD0 + 4008)) "$(mstat 1 mesh.bad_frames)"
# Rate-limited per kind of fault (the first ten of each, then one in a
# thousand): a few dozen lines for thousands of frames.
expect_lt "... the log stays short (rate-limited: $(log_count 1 PM-PEER-BAD-FRAME) lines)" \
    "$(log_count 1 PM-PEER-BAD-FRAME)" 40
t=$(now_ms)
pm 1 status
expect_lt "... n1 answers status promptly afterwards ($(($(now_ms) - t)) ms)" $(($(now_ms) - t)) 1000

# ---- a request from a node that is not a member --------------------------------------------

UNK0=$(mstat 1 mesh.unknown_peer)
L=$(lines 1)
run "$MESHPOKE" get "$EP1" mallory "$P"
wait_stat 1 mesh.unknown_peer $((UNK0 + 1)) 3 || true
expect_eq "GET from unknown node 'mallory': counted in mesh.unknown_peer" $((UNK0 + 1)) \
    "$(mstat 1 mesh.unknown_peer)"
expect_eq "... logged (PM-PEER-UNKNOWN naming it)" 1 \
    "$(tail -n +$((L + 1)) "$MESH_DIR/n1.log" | grep -c "PM-PEER-UNKNOWN.*mallory" || true)"
expect_eq "... mallory does not become a member" "<absent>" "$(member_field 1 mallory state)"

# ---- a SWIM message that fails validation ----------------------------------------------------

INV0=$(mstat 1 mesh.dropped_invalid)
L=$(lines 1)
# an update with state 9 (there are four states), from a member's name, so
# it reaches the membership checks (a non-member's word about others is
# dropped before them: see the forged death below)
INC3=$(member_field 1 n3 incarnation)
run "$MESHPOKE" swim "$EP1" 5 n3 "${MESH_EP[3]}" "$INC3" n2 "${MESH_EP[2]}" 999999999999999 9
wait_stat 1 mesh.dropped_invalid $((INV0 + 1)) 3 || true
expect_eq "SWIM gossip with an invalid state: counted in mesh.dropped_invalid" $((INV0 + 1)) \
    "$(mstat 1 mesh.dropped_invalid)"
expect_lt "... logged (a warning in n1's log)" 0 "$(new_warns 1 "$L")"
expect_eq "... n2 unaffected in n1's view" alive "$(member_field 1 n2 state)"

# ---- a stale incarnation ---------------------------------------------------------------------

INC3=$(member_field 1 n3 incarnation)
INC2=$(member_field 1 n2 incarnation)
STALE0=$(mstat 1 mesh.dropped_stale)
L=$(lines 1)
# "n3" speaking at an incarnation below the one n1 holds, and claiming n2 is dead
run "$MESHPOKE" swim "$EP1" 5 n3 "${MESH_EP[3]}" $((INC3 - 1000)) n2 "${MESH_EP[2]}" "$INC2" 3
wait_stat 1 mesh.dropped_stale $((STALE0 + 1)) 3 || true
expect_eq "SWIM gossip from n3 at a stale incarnation: counted in mesh.dropped_stale" \
    $((STALE0 + 1)) "$(mstat 1 mesh.dropped_stale)"
expect_lt "... logged (a warning in n1's log)" 0 "$(new_warns 1 "$L")"
# No wait needed: a stale message is dropped whole, its rumors with it, in
# the step that counts it (mesh/swim.c pm_swim_receive).
expect_eq "... the rumor it carried (n2 dead) was not applied" "alive alive" \
    "$(member_field 1 n2 state) $(member_field 1 n3 state)"
expect_eq "... no PM-PEER-DEAD in n1's log" 0 "$(log_count 1 PM-PEER-DEAD)"

# ---- a forged death of a live member ----------------------------------------------------------

# From outside the mesh: a non-member's word about another member is
# dropped, counted and logged before it reaches the membership state.
UNTR0=$(mstat 1 mesh.untrusted_updates)
L=$(lines 1)
INC2=$(member_field 1 n2 incarnation)
run "$MESHPOKE" swim "$EP1" 5 mallory tcp://127.0.0.1:9 1 n2 "${MESH_EP[2]}" "$INC2" 3
wait_stat 1 mesh.untrusted_updates $((UNTR0 + 1)) 3 || true
expect_eq "forged 'n2 is dead' from non-member mallory: dropped and counted (untrusted_updates)" \
    $((UNTR0 + 1)) "$(mstat 1 mesh.untrusted_updates)"
expect_eq "... logged (PM-PEER-UNTRUSTED naming mallory)" 1 \
    "$(tail -n +$((L + 1)) "$MESH_DIR/n1.log" | grep -c "PM-PEER-UNTRUSTED.*mallory" || true)"
expect_eq "... n2 still alive in n1's view" alive "$(member_field 1 n2 state)"

expect_eq "the long await on n1 is still waiting after all the strangers' input" "" \
    "$(done_rc waiter)"

# Under a member's name (what a compromised member, or anyone without
# CURVE, could send): applied as news, and the live member refutes it.
INC2_SELF=$(mstat 2 mesh.incarnation)
INC2=$(member_field 1 n2 incarnation)
INC3=$(member_field 1 n3 incarnation)
run "$MESHPOKE" swim "$EP1" 5 n3 "${MESH_EP[3]}" "$INC3" n2 "${MESH_EP[2]}" "$INC2" 3
refuted=0
for _ in $(seq 60); do
    [ "$(mstat 2 mesh.incarnation)" -gt "$INC2_SELF" ] && { refuted=1; break; }
    sleep 0.05
done
expect_eq "forged 'n2 is dead' under member n3's name: n2 refutes (its incarnation rises)" 1 \
    "$refuted"
alive_all=1
for k in 1 3; do
    wait_state $k n2 alive 3 || alive_all=0
done
expect_eq "... every member sees n2 alive" 1 "$alive_all"
expect_lt "... at n2's new incarnation (n1's view)" "$INC2" "$(member_field 1 n2 incarnation)"
expect_eq "... mallory does not become a member" "<absent>" "$(member_field 1 mallory state)"

# ---- everything keeps working ------------------------------------------------------------------

# n1 took the forged death under a member's name as news: if it declared
# n2 dead meanwhile, its awaits on n2's promises ended with OWNER_LOST, as
# for a real death; if not, the await is still there and gets the value.
if [ "$(log_count 1 "PM-PEER-DEAD member n2 ")" -ge 1 ]; then
    wait_done 10 waiter || true
    expect_eq "n1 declared n2 dead on the forged word: its await on n2's promise ends with OWNER_LOST" \
        "1 1" "$(done_rc waiter) $(grep -c OWNER_LOST "$TMP/waiter.log" || true)"
    pm 3 resolve "$P" "survived"
    expect_eq "n2's promise resolves from n3" 0 "$RC"
    pm 1 await "$P" --timeout 5s
    expect_eq "... and reads so from n1" "0 survived" "$RC $OUT"
else
    expect_eq "the long await on n1 is still waiting" "" "$(done_rc waiter)"
    pm 3 resolve "$P" "survived"
    expect_eq "n2's promise resolves from n3" 0 "$RC"
    wait_done 10 waiter || true
    expect_eq "the long await on n1 gets the value" "0 survived" \
        "$(done_rc waiter) $(cat "$TMP/waiter.out")"
fi
pm 3 create
P3=$OUT
W3=$(mstat 3 clients.waiters)
timed_bg end2 2 await "$P3" --timeout 10s
need_waiters_on 3 $((W3 + 1)) # n2's subscription, held at the owner
pm 1 resolve "$P3" "still working"
wait_done 10 end2 || true
expect_eq "afterwards: create on n3, resolve from n1, await on n2" "0 still working" \
    "$(done_rc end2) $(cat "$TMP/end2.out")"
for k in 1 2 3; do
    expect_eq "n$k sees 3 alive at the end" 3 "$(mstat $k mesh.members.alive)"
done
mesh_down

# ---- a relayed request on a space the receiver does not serve --------------------------------
# A peer relays a settle to the agent it takes to own the promise. The
# receiver here is the owner's backup: it keeps a copy of the promise, but
# does not serve its space. Applying the settle to that copy would
# acknowledge a change that is neither at the owner nor at any backup (lost,
# or a second outcome, once the space is taken over): it is refused with
# OWNER_LOST, counted, and nothing changes.
mesh_up 3 --insecure --replicas 2 --unsafe-no-coordination
backup_of_n1() {
    python3 -c 'import json, sys
b = json.loads(sys.argv[1]) if sys.argv[1].startswith("[") else []
print(" ".join(x["node"] for x in b if x["counted"]))' "$(mstat 1 replication.backups)"
}
has_backup() { [ -n "$(backup_of_n1)" ]; }
wait_for 10 has_backup || true
B=$(backup_of_n1)
B=${B#n}
expect_match "n1 has a backup that holds its state" "$B" '^[23]$'
[ -n "$B" ] || B=2
OTHER=$((5 - B))
pm 1 create # acknowledged once the backup holds it
Q=$OUT
REF0=$(mstat "$B" mesh.refused_not_served)
run "$MESHPOKE" settle "${MESH_EP[$B]}" "n$OTHER" "$Q" "forged-at-the-backup"
wait_stat "$B" mesh.refused_not_served $((REF0 + 1)) 5 || true
expect_eq "a settle relayed to n1's backup (which does not serve n1's space) is refused, counted" \
    $((REF0 + 1)) "$(mstat "$B" mesh.refused_not_served)"
pm 1 get "$Q"
expect_eq "... the owner still has it pending" pending "$(json_get "$OUT" state)"
# The owner dies: its backup serves the space from its copy, which the
# refused settle did not touch.
kill -KILL "${MESH_PID[1]}"
wait "${MESH_PID[1]}" 2>/dev/null || true
took() { [ "$(log_count "$B" PM-TAKEOVER)" -ge 1 ]; }
wait_for 15 took || true
pm "$B" resolve "$Q" "after-takeover"
expect_eq "after the takeover the promise is still pending: it resolves now" 0 "$RC"
pm "$OTHER" await "$Q" --timeout 5s
expect_eq "... with the value settled after the takeover, not the refused one" \
    "0 after-takeover" "$RC $OUT"
mesh_down
finish
