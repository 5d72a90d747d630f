#!/usr/bin/env bash
# test_fanin.sh - combinators (all, any, race, all-settled) and then's
# rejection handler (issue 15) on a mesh of five real agents started by
# scripts/mesh-up, driven through the real `pmesh` CLI, workers and a small
# libpmesh client that pipelines (fanin_poke.c):
#
#   - inputs on four owners (n1..n4), combinators made on a fifth (n5);
#     inputs created pipelined from n5 (then on each owner's promise, the
#     combinator sent before any reply: the inputs do not exist yet);
#   - each combinator's semantics: values in input order, duplicates, the
#     first failure, all failed, the first to settle, every outcome, input
#     timeouts, the combinator's own timeout, bytes that are not UTF-8;
#   - a combinator is an ordinary promise: awaited from another agent,
#     chained with then, fed into another combinator on another agent;
#     settling it directly is refused (NOT_SETTLEABLE);
#   - then --on-reject runs the handler with the failed source's reason;
#   - --replicas 2: an input's owner SIGKILLed before its input settles; its
#     heir takes over and the combinator still completes with the right value.
#
#   BUILD=build tests/integration/test_fanin.sh
. "$(dirname "$0")/mesh_lib.sh"

POKE=$TMP/fanin_poke
b=$(cd "$BUILD" && pwd)
san=()
[ -n "${SANITIZE:-}" ] && san=(-fsanitize="$SANITIZE")
# shellcheck disable=SC2046
cc -std=gnu11 -O1 -Wall -Wextra "${san[@]}" -I"$SRC_DIR/node" \
    "$SRC_DIR/tests/integration/fanin_poke.c" "$b/lib/libpmesh.a" \
    $(pkg-config --cflags --libs libzmq libczmq libprotobuf-c jansson yaml-0.1) \
    -lpthread -lm -o "$POKE"

# field K ID FIELD: FIELD of `pmesh get ID` through nK.
field() {
    pm "$1" get "$2"
    json_get "$OUT" "$3"
}

# settled_on K ID SECONDS: waits until ID is no longer pending (through nK).
settled_on() {
    local k=$1 id=$2
    need "$id settles" "$3" bash -c "! \"$PMESH\" --socket \"${MESH_SOCK[$k]}\" get \"$id\" | grep -q '\"state\":\"pending\"'"
}

# mk K: a new promise on nK (sets P).
mk() {
    pm "$1" create "${@:2}"
    P=$OUT
}

# ===================================================================== 5 agents

mesh_up 5
mesh_worker w-id 1 ident 4 cat
mesh_worker w-got 3 got 4 sh -c 'printf "got:"; cat'
mesh_worker w-fix 2 fix 4 sh -c 'printf "recovered from "; cat'

# ---- all: values in input order, a duplicate counts twice ---------------------------

mk 1; A1=$P
mk 2; A2=$P
mk 3; A3=$P
mk 4; A4=$P
pm 5 all "$A1" "$A2" "$A3" "$A4" "$A1"
expect_eq "all on n5 over inputs on n1..n4 exits 0" 0 "$RC"
C=$OUT
expect_match "the combinator lives in n5's space" "^n5-" "$C"
timed_bg aw2 2 await "$C" --timeout 20s # a combinator is awaited like any promise
pm 3 resolve "$A3" three
pm 1 resolve "$A1" one
pm 4 resolve "$A4" four
expect_eq "all: pending while one input is" "pending" "$(field 5 "$C" state)"
pm 2 resolve "$A2" two
settled_on 5 "$C" 10
expect_eq "all: resolved once every input resolved" "resolved" "$(field 5 "$C" state)"
expect_eq "all: the values in input order, duplicate included" \
    '["one","two","three","four","one"]' "$(field 5 "$C" value)"
wait_done 10 aw2 || true
expect_eq "await of the combinator from n2 gets the list" \
    '["one","two","three","four","one"]' "$(cat "$TMP/aw2.out")"

# ---- all: the first failure rejects, with that input's id, state and reason -------

mk 1; F1=$P
mk 2; F2=$P
mk 3 --timeout 30s; F3=$P
pm 5 all "$F1" "$F2" "$F3"
C=$OUT
pm 1 resolve "$F1" fine
pm 2 reject "$F2" boom
settled_on 5 "$C" 10
expect_eq "all: rejected by the first failure" "rejected" "$(field 5 "$C" state)"
R=$(field 5 "$C" reason)
expect_eq "all: the reason names the failed input" "$F2" "$(json_get "$R" id)"
expect_eq "all: ... its state" "rejected" "$(json_get "$R" state)"
expect_eq "all: ... and its reason" "boom" "$(json_get "$R" reason)"
pm 3 resolve "$F3" late
expect_eq "all: a later input changes nothing" "rejected" "$(field 5 "$C" state)"

# ---- any ----------------------------------------------------------------------------

mk 1; Y1=$P
mk 2; Y2=$P
mk 4; Y4=$P
pm 5 any "$Y1" "$Y2" "$Y4"
C=$OUT
pm 1 reject "$Y1" no
pm 4 resolve "$Y4" yes
settled_on 5 "$C" 10
expect_eq "any: resolved by the first input to resolve" "resolved" "$(field 5 "$C" state)"
expect_eq "any: with its value, as it is" "yes" "$(field 5 "$C" value)"

mk 1; N1=$P
mk 2 --timeout 300ms; N2=$P
mk 3; N3=$P
pm 5 any "$N1" "$N2" "$N3"
C=$OUT
pm 1 reject "$N1" "bad one"
pm 3 cancel "$N3"
settled_on 5 "$C" 10
expect_eq "any: rejected when every input failed (one timed out)" "rejected" \
    "$(field 5 "$C" state)"
R=$(field 5 "$C" reason)
expect_eq "any: every reason, in input order" \
    "rejected timedout canceled" \
    "$(python3 -c 'import json,sys; print(" ".join(x["state"] for x in json.loads(sys.argv[1])))' "$R")"
expect_eq "any: with each input's id" "$N1" \
    "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])[0]["id"])' "$R")"

# ---- race ---------------------------------------------------------------------------

mk 2; R2=$P
mk 3; R3=$P
pm 5 race "$R2" "$R3"
C=$OUT
pm 3 reject "$R3" "lost the race"
settled_on 5 "$C" 10
expect_eq "race: settles as the first input settled (rejected)" "rejected" "$(field 5 "$C" state)"
expect_eq "race: with its reason" "lost the race" "$(field 5 "$C" reason)"
pm 2 resolve "$R2" slow
expect_eq "race: the second input changes nothing" "rejected" "$(field 5 "$C" state)"

# ---- all-settled, with bytes that are not UTF-8 -------------------------------------

mk 1; S1=$P
mk 2; S2=$P
mk 4 --timeout 300ms; S4=$P
pm 5 all-settled "$S1" "$S2" "$S4"
C=$OUT
printf '\377\000A' >"$TMP/bin"
run_in "$TMP/bin" "$PMESH" --socket "${MESH_SOCK[1]}" resolve "$S1"
expect_eq "resolve with binary stdin exits 0" 0 "$RC"
pm 2 reject "$S2" nope
settled_on 5 "$C" 10
expect_eq "all-settled: resolved" "resolved" "$(field 5 "$C" state)"
expect_eq "all-settled: each outcome; bytes as base64; the timeout" \
    '[{"state": "resolved", "value": {"base64": "/wBB"}}, {"state": "rejected", "reason": "nope"}, {"state": "timedout", "reason": "timeout elapsed"}]' \
    "$(python3 -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1])))' "$(field 5 "$C" value)")"

# ---- the combinator's own timeout; settling it directly is refused ------------------

mk 3; T3=$P
pm 5 all "$T3" --timeout 400ms
C=$OUT
pm 5 resolve "$C" forged
expect_eq "resolving a combinator directly is refused" 1 "$RC"
expect_match "... with NOT_SETTLEABLE" "NOT_SETTLEABLE|combinator" "$ERR"
settled_on 5 "$C" 10
expect_eq "a combinator times out by its own timeout" "timedout" "$(field 5 "$C" state)"
pm 3 resolve "$T3" late
expect_eq "its input settling later changes nothing" "timedout" "$(field 5 "$C" state)"

pm 5 all
expect_eq "all without ids is a usage error" 64 "$RC"

# ---- an input that does not exist (yet) ---------------------------------------------
# A pipelined input may reach its owner after the combinator's subscription:
# not found is asked again for 10 s before it counts. One that never comes
# rejects then, naming it.
mk 2; X2=$P
GHOST="${X2%.*}.zz9" # in n2's space, never minted
t0=$(now_ms)
pm 5 all-settled "$X2" "$GHOST"
G=$OUT
pm 2 resolve "$X2" here
# The same wait, for ids a client mints (fanin_poke late-*): a combinator
# over the id its next then or create will mint, which is sent only once the
# combinator settled (the late mint of seed 3439 of the simulator, where the
# then was parked and re-sent after the combinator gave up). Its owner
# records the id as never made (rejected NOT_FOUND) before the combinator
# hears it, and the late then / create is refused: the combinator's outcome
# stays the outcome of its input. late-then: combinator on n5, the id in
# n2's space (the owner answers the combinator's final lookup);
# late-create: combinator on n2 over n2's own id (the local path).
poke_bg() {
    local name=$1
    shift
    bg "$name" bash -c '"$@"; echo "$?" >"$0"' "$TMP/$name.done" "$POKE" "$@"
}
poke_bg late1 late-then "${MESH_SOCK[5]}" ident "$X2"
poke_bg late2 late-create "${MESH_SOCK[2]}"
sleep 2 # the passing of time is under test: not found is not final at once
expect_eq "an input not found yet leaves the combinator pending (2 s later)" pending \
    "$(field 5 "$G" state)"
pm 2 get "$GHOST"
expect_match "... and its owner has not recorded it yet (NOT_FOUND at n2)" "^pmesh: NOT_FOUND: " "$ERR"
settled_on 5 "$G" 20
GT=$(($(now_ms) - t0))
expect_eq "... it settles once the wait is over" resolved "$(field 5 "$G" state)"
expect_match "... the missing input counts as NOT_FOUND" "NOT_FOUND" "$(field 5 "$G" value)"
expect_lt "... after about 10 s ($GT ms)" 9000 "$GT"
expect_eq "... and now reads rejected at its owner, for good" rejected "$(field 2 "$GHOST" state)"
expect_match "... with reason NOT_FOUND" "^NOT_FOUND: " "$(field 2 "$GHOST" reason)"
expect_eq "... the same through another agent" rejected "$(field 4 "$GHOST" state)"
expect_match "... the combinator read it with that very outcome" \
    '"state":"rejected","reason":"NOT_FOUND: no promise with that id' "$(field 5 "$G" value)"
expect_eq "n2 logged recording it as never made" 1 "$(log_count 2 "PM-COMBINE-NOT-FOUND.*$GHOST")"
wait_done 30 late1 late2 || true
for l in late1 late2; do
    expect_eq "$l: the helper ran to its end (exit 0)" 0 "$(cat "$TMP/$l.done" 2>/dev/null)"
    [ "$(cat "$TMP/$l.done" 2>/dev/null)" = 0 ] || cat "$TMP/$l.out" "$TMP/$l.log" >&2
    expect_match "$l: the combinator read its input as rejected NOT_FOUND" \
        "^combinator rejected NOT_FOUND: no promise with that id" "$(grep '^combinator ' "$TMP/$l.out")"
    expect_eq "$l: the late mint of that id is refused" "late BAD_REQUEST" \
        "$(grep '^late ' "$TMP/$l.out")"
    expect_match "$l: the id still reads rejected NOT_FOUND afterwards" \
        "^ghost rejected NOT_FOUND: no promise with that id" "$(grep '^ghost [a-z]* ' "$TMP/$l.out")"
done
L1=$(sed -n 's/^ghost \([^ ]*\)$/\1/p' "$TMP/late1.out")
expect_match "late1's id lives in n2's space" "^${X2%%~*}~" "$L1"
expect_eq "n2 recorded late1's id (the combinator's final lookup from n5)" 1 \
    "$(log_count 2 "PM-COMBINE-NOT-FOUND.*$L1")"
expect_eq "no continuation ran into it (ident ran for no late then)" 0 \
    "$(grep -c "$L1" "$TMP/w-id.log" 2>/dev/null || true)"

# ---- nested combinators, then on a combinator, on another agent ---------------------

mk 1; M1=$P
mk 2; M2=$P
mk 4; M4=$P
pm 5 any "$M1" "$M2"
INNER=$OUT
pm 3 all "$INNER" "$M4" # on n3: one input lives on n5, one on n4
OUTER=$OUT
pm 4 then "$OUTER" got
CHAIN=$OUT
pm 2 resolve "$M2" inner
pm 4 resolve "$M4" other
settled_on 4 "$CHAIN" 15
expect_eq "nested: the outer combinator (on n3) resolved" '["inner","other"]' \
    "$(field 3 "$OUTER" value)"
expect_eq "then on a combinator ran the function on its list" 'got:["inner","other"]' \
    "$(field 4 "$CHAIN" value)"

# ---- then --on-reject ----------------------------------------------------------------

mk 4; J=$P
pm 1 then "$J" ident --on-reject fix
expect_eq "then --on-reject exits 0" 0 "$RC"
JR=$OUT
pm 4 reject "$J" "disk full"
settled_on 1 "$JR" 15
expect_eq "on-reject: the handler ran and resolved the new promise" "resolved" \
    "$(field 1 "$JR" state)"
expect_eq "on-reject: the handler got the source's reason" "recovered from disk full" \
    "$(field 1 "$JR" value)"
mk 4; J=$P
pm 1 then "$J" ident --on-reject fix
JR=$OUT
pm 4 resolve "$J" fine
settled_on 1 "$JR" 15
expect_eq "on-reject: a resolved source runs the function, not the handler" "fine" \
    "$(field 1 "$JR" value)"
mk 4; J=$P
pm 1 then "$J" ident
JR=$OUT
pm 4 cancel "$J"
settled_on 1 "$JR" 15
expect_eq "without --on-reject a failed source still rejects the chain" "rejected" \
    "$(field 1 "$JR" state)"

# ---- inputs created pipelined from the fifth agent -----------------------------------

mk 1; B1=$P
mk 2; B2=$P
mk 3; B3=$P
mk 4; B4=$P
run "$POKE" "${MESH_SOCK[5]}" all ident "$B1" "$B2" "$B3" "$B4"
expect_eq "pipelined: four thens and the all, sent before any reply, all answered OK" 0 "$RC"
C=$(sed -n 1p <<<"$OUT")
read -r -a INS <<<"$(sed -n 2p <<<"$OUT")"
expect_match "pipelined: the first input lives on n1" "^n1-" "${INS[0]}"
expect_match "pipelined: the fourth input lives on n4" "^n4-" "${INS[3]}"
for k in 1 2 3 4; do
    b="B$k"
    pm "$k" resolve "${!b}" "v$k"
done
settled_on 5 "$C" 15
expect_eq "pipelined: the all resolved with the inputs' values" '["v1","v2","v3","v4"]' \
    "$(field 5 "$C" value)"

mesh_down

# ============================================ one agent, a data dir: SIGKILL, restart

# A combinator and then --on-reject come back from the WAL: the agent
# subscribes again and settles from inputs settled after the restart.
D=$TMP/data
start_agent 1 --data-dir "$D"
A=$AGENT_PID
disown "$A"
SOCK=$AGENT_SOCK
run "$PMESH" --socket "$SOCK" create; W1=$OUT
run "$PMESH" --socket "$SOCK" create; W2=$OUT
run "$PMESH" --socket "$SOCK" all-settled "$W1" "$W2"
WC=$OUT
run "$PMESH" --socket "$SOCK" then "$W2" ident --on-reject fix
WT=$OUT
run "$PMESH" --socket "$SOCK" resolve "$W1" before
kill -KILL "$A"
wait_exit "$A" 5
start_agent 1 --data-dir "$D"
A=$AGENT_PID
disown "$A"
run "$PMESH" --socket "$SOCK" resolve "$WC" forged
expect_eq "after a restart the combinator still refuses a direct settle" 1 "$RC"
run "$PMESH" --socket "$SOCK" reject "$W2" "after restart"
need "the revived combinator settles" 10 bash -c \
    "\"$PMESH\" --socket \"$SOCK\" get \"$WC\" | grep -q '\"state\":\"resolved\"'"
run "$PMESH" --socket "$SOCK" get "$WC"
expect_eq "after SIGKILL + restart: the combinator has both outcomes" \
    '[{"state":"resolved","value":"before"},{"state":"rejected","reason":"after restart"}]' \
    "$(json_get "$OUT" value)"
start_worker w-fix1 --socket "$SOCK" fix --concurrency 1 -- sh -c 'printf "recovered from "; cat'
need "the revived then --on-reject runs its handler" 10 bash -c \
    "\"$PMESH\" --socket \"$SOCK\" get \"$WT\" | grep -q '\"state\":\"resolved\"'"
run "$PMESH" --socket "$SOCK" get "$WT"
expect_eq "after SIGKILL + restart: on-reject ran with the reason" "recovered from after restart" \
    "$(json_get "$OUT" value)"

# ================================================= 5 agents, --replicas 2: takeover

mesh_up 5 --replicas 2 --unsafe-no-coordination
mk 2; K2=$P
mk 3; K3=$P
mk 2; K2b=$P
pm 5 all "$K2" "$K3" "$K2b"
C=$OUT
pm 3 resolve "$K3" three
pm 2 resolve "$K2b" before
need_waiters_on 2 1 # n5's subscription to the input still pending, held at n2
kill -KILL "${MESH_PID[2]}"
# The heir of n2's space takes over; then the input settles there.
deadline=$(($(now_ms) + 20000))
while :; do
    pm 5 resolve "$K2" after
    [ "$RC" = 0 ] && break
    [ "$(now_ms)" -lt "$deadline" ] || break
    sleep 0.2
done
expect_eq "after n2's SIGKILL its input is settled at the heir" 0 "$RC"
settled_on 5 "$C" 20
expect_eq "the combinator still completes, with the right values" '["after","three","before"]' \
    "$(field 5 "$C" value)"

# The combinator's own agent SIGKILLed: the heir of its space revives it
# and subscribes to its inputs again.
mk 3; L3=$P
mk 4; L4=$P
pm 1 all "$L3" "$L4"
C=$OUT
pm 3 resolve "$L3" x
kill -KILL "${MESH_PID[1]}"
pm 4 resolve "$L4" y
deadline=$(($(now_ms) + 20000))
while :; do
    pm 5 get "$C"
    [ "$RC" = 0 ] && [ "$(json_get "$OUT" state)" = resolved ] && break
    [ "$(now_ms)" -lt "$deadline" ] || break
    sleep 0.2
done
expect_eq "after its agent's SIGKILL the heir completes the combinator" '["x","y"]' \
    "$(json_get "$OUT" value)"

mesh_down
finish
