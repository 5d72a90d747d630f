#!/usr/bin/env bash
# test_fanin_early.sh - a combinator's continuation starts early, on the
# tentative outcomes of its inputs, and its result waits until they are
# durable (issue 15; fanin_early, fanins.c, place.c). Five real agents,
# --replicas 2, driven through the real `pmesh` CLI and a worker:
#   - the inputs I1 and I2 live on n1; all(I1, I2), then(all, ident) and
#     the worker on an agent that is not n1's backup (nH);
#   - the owner's backup is SIGSTOPped, so I2's settle cannot be made
#     durable: its client's `resolve` waits, the owner sends nH the outcome
#     at once, marked tentative (fanin.tentative_sent), and nH starts the
#     continuation on it (fanin.early_starts);
#   - the continuation's target stays pending as long as the resolve of I2
#     has not been acknowledged (no value computed from an input is visible
#     before that input is durable), then settles with the right value,
#     and the early start is kept (fanin.early_kept);
#   - early copies are asked for the outcomes that decide the combinator
#     (fanin_early_copies=decisive, the default): I1's resolve (I2 still
#     pending) gets none, I2's (the input waited for last: nH asks for it,
#     fanin.last_asked) gets one; a rejection, which decides `all` whatever
#     is pending, gets one, and the then's --on-reject function starts
#     early; with fanin_early_copies=every both inputs' resolves get one;
#   - with fanin_early=false the owner sends no early copy and nothing starts
#     early.
#   BUILD=build tests/integration/test_fanin_early.sh
. "$(dirname "$0")/mesh_lib.sh"

# state_on K ID: ID's state through nK.
state_on() {
    pm "$1" get "$2"
    json_get "$OUT" state
}

# pick_roles: O (the inputs' owner), B (the agent O replicates to) and
# H (an agent that is neither, and does not replicate to B either: its own
# answers must not wait for B), where the combinator, its then and the
# worker live.
pick_roles() {
    # Any owner O whose backup B is not H's backup either (backups follow
    # the random space names: with O fixed, every other agent could back up
    # to B, and no H would do).
    local o k b deadline=$(($(now_ms) + 10000))
    O="" B="" H=""
    until [ -n "$H" ] || [ "$(now_ms)" -ge "$deadline" ]; do
        for o in 1 2 3 4 5; do
            b=$(backup_of "$o")
            B=${b#n}
            [ -n "$B" ] || continue
            for k in 1 2 3 4 5; do
                [ "$k" != "$o" ] && [ "$k" != "$B" ] || continue
                b=$(backup_of "$k")
                if [ -n "$b" ] && [ "$b" != "n$B" ]; then
                    O=$o H=$k
                    break 2
                fi
            done
        done
        [ -n "$H" ] || sleep 0.2
    done
}

# early_case NAME: all(I1, I2) + then on nH; I2 settled at O while O's
# backup is stopped. Sets T (the then's target), RESOLVED_MS (when the
# resolve of I2 was acknowledged) and PENDING_AFTER (how many polls saw T
# settled before that acknowledgement: must be 0).
early_case() {
    local name=$1 st
    pm "$O" create; I1=$OUT
    pm "$O" create; I2=$OUT
    pm "$H" all "$I1" "$I2"; C=$OUT
    pm "$H" then "$C" ident; T=$OUT
    pm "$O" resolve "$I1" a
    need_waiters_on "$O" 1 # nH's subscription to I2
    # With early copies, nH heard I1 and asked for every early copy of I2,
    # the input it waits for last: that request is in before I2 settles.
    [ -z "${LAST0:-}" ] ||
        need "nH asked I2's owner for its early copies" 5 \
            stat_at_least "${MESH_SOCK[$H]}" fanin.last_asked $((LAST0 + 1))
    kill -STOP "${MESH_PID[$B]}"
    timed_bg "$name" "$O" resolve "$I2" b
    SETTLED_EARLY=0
    local deadline=$(($(now_ms) + 20000))
    while [ -z "$(done_rc "$name")" ] && [ "$(now_ms)" -lt "$deadline" ]; do
        st=$(state_on "$H" "$T")
        # Seen settled while the resolve is not acknowledged yet (its done
        # file not written): a value computed from an input not durable.
        if [ "$st" != pending ] && [ -z "$(done_rc "$name")" ]; then
            SETTLED_EARLY=$((SETTLED_EARLY + 1))
        fi
        # Let the backup go once the early start had time to run (or, if
        # it never comes, after 1.5 s: the case then fails on its counter).
        if [ "$(now_ms)" -ge "$STOP_UNTIL" ]; then
            kill -CONT "${MESH_PID[$B]}" 2>/dev/null
        fi
        sleep 0.05
    done
    kill -CONT "${MESH_PID[$B]}" 2>/dev/null
    wait_done 20 "$name"
}

mesh_up 5 --replicas 2 --unsafe-no-coordination
pick_roles
check "n$O replicates to n$B; the combinator goes to n$H, which does not" test -n "$H"
mesh_worker w-id "$H" ident 4 cat

# ---- fanin_early (the default): the continuation starts early, its result waits ----
STOP_UNTIL=0
pm "$O" create; J1=$OUT
pm "$H" all "$J1"; JC=$OUT
pm "$H" then "$JC" ident; JT=$OUT
pm "$O" resolve "$J1" warm
settled_on_h() { [ "$(state_on "$H" "$1")" = resolved ]; }
need "a warm-up combinator's continuation completes" 10 settled_on_h "$JT"
starts0=$(mstat "$H" fanin.early_starts)
tent0=$(mstat "$O" fanin.tentative_sent)
LAST0=$(mstat "$H" fanin.last_asked)

STOP_UNTIL=$(($(now_ms) + 1500))
early_case early1
expect_eq "the held resolve of I2 is acknowledged once the backup is back" 0 "$(done_rc early1)"
need "nH starts the continuation early, before I2's settle is durable" 5 \
    stat_at_least "${MESH_SOCK[$H]}" fanin.early_starts $((starts0 + 1))
expect_eq "the continuation's target is never seen settled before I2's resolve is acknowledged" \
    0 "$SETTLED_EARLY"
need "the continuation's target settles" 10 settled_on_h "$T"
pm "$H" get "$T"
expect_eq "its value is computed from the inputs' durable outcomes" '["a","b"]' \
    "$(json_get "$OUT" value)"
need "the owner sent nH an early (tentative) copy of I2's outcome" 5 \
    stat_at_least "${MESH_SOCK[$O]}" fanin.tentative_sent $((tent0 + 1))
expect_eq "decisive copies: none of I1's resolve (I2 pending), one of I2's" $((tent0 + 1)) \
    "$(mstat "$O" fanin.tentative_sent)"
need "the early start is kept (the combinator settled as expected)" 5 \
    stat_at_least "${MESH_SOCK[$H]}" fanin.early_kept 1
expect_eq "no early start was dropped" 0 "$(mstat "$H" fanin.early_dropped)"

# A rejection decides `all` whatever is pending: its early copy goes at
# once, and the then's --on-reject function starts on it.
tent1=$(mstat "$O" fanin.tentative_sent)
starts1=$(mstat "$H" fanin.early_starts)
pm "$O" create; K1=$OUT
pm "$O" create; K2=$OUT
pm "$H" all "$K1" "$K2"; KC=$OUT
pm "$H" then "$KC" ident --on-reject ident; KT=$OUT
need_waiters_on "$O" 2
pm "$O" reject "$K1" nope
need "a rejection (K2 still pending) gets an early copy" 5 \
    stat_at_least "${MESH_SOCK[$O]}" fanin.tentative_sent $((tent1 + 1))
need "the --on-reject function starts early on it" 5 \
    stat_at_least "${MESH_SOCK[$H]}" fanin.early_starts $((starts1 + 1))
need "the then's target settles" 10 settled_on_h "$KT"
pm "$H" get "$KC"
expect_eq "the combinator is rejected" rejected "$(json_get "$OUT" state)"
mesh_down

# ---- fanin_early_copies=every: an early copy of every input's outcome -----------------
mesh_up 5 --replicas 2 --unsafe-no-coordination --fanin-early-copies=every
pick_roles
check "every: n$O replicates to n$B; the combinator goes to n$H, which does not" test -n "$H"
mesh_worker w-id3 "$H" ident 4 cat
LAST0=""
STOP_UNTIL=$(($(now_ms) + 1500))
early_case every1
expect_eq "every: the held resolve of I2 is acknowledged" 0 "$(done_rc every1)"
need "every: the continuation's target settles" 10 settled_on_h "$T"
need "every: early copies of both inputs' resolves" 5 \
    stat_at_least "${MESH_SOCK[$O]}" fanin.tentative_sent 2
expect_eq "every: exactly those two" 2 "$(mstat "$O" fanin.tentative_sent)"
expect_eq "every: no input was asked for separately" 0 "$(mstat "$H" fanin.last_asked)"
expect_eq "every: the target is never seen settled before the resolve" 0 "$SETTLED_EARLY"
mesh_down

# ---- fanin_early=false: one answer per input, nothing starts early ------------------
mesh_up 5 --replicas 2 --unsafe-no-coordination --fanin-early=false
LAST0=""
pick_roles
check "fanin_early=false: n$O replicates to n$B; the combinator goes to n$H, which does not" \
    test -n "$H"
mesh_worker w-id2 "$H" ident 4 cat
STOP_UNTIL=$(($(now_ms) + 700))
early_case late1
expect_eq "fanin_early=false: the resolve of I2 is acknowledged" 0 "$(done_rc late1)"
need "fanin_early=false: the continuation's target settles" 10 settled_on_h "$T"
pm "$H" get "$T"
expect_eq "fanin_early=false: its value" '["a","b"]' "$(json_get "$OUT" value)"
expect_eq "fanin_early=false: the target is never seen settled before the resolve" 0 \
    "$SETTLED_EARLY"
expect_eq "fanin_early=false: no early copy sent" 0 "$(mstat "$O" fanin.tentative_sent)"
expect_eq "fanin_early=false: nothing started early" 0 "$(mstat "$H" fanin.early_starts)"
mesh_down
finish
