#!/usr/bin/env bash
# test_chain_forward.sh - chain forwarding and guard rule R6 (issue 16;
# place.c). Real agents on 127.0.0.N, --replicas 2, chains built on n1
# through the real `pmesh` CLI, steps run by the C worker pmesh_chain (it
# appends a suffix to its input, so a chain's end value says which steps ran,
# in which order, how many times). n1 owns every promise of a chain; B is the
# agent n1 replicates to, H the other one.
#   1. step served only on H: a 10-step chain ends with the right value; n1
#      hands the 9 continuations after the first on with its invocation
#      (chain.forwarded), H starts them on its own results (chain.started),
#      n1 adopts every one (chain.kept), none is dropped;
#   2. a middle step's function served only on B (other): H cannot start it,
#      n1 drops its chained record (chain.dropped) and places it on B, and
#      the steps after it run too: the end value has every suffix in order;
#   3. R6, nothing visible before it is durable: B stopped (SIGSTOP) for
#      2 s, a chain on n1 of 9 steps run on H and a last one run by a
#      worker of n1's own: n1 applies every step's result at once (its
#      source is in the target's space), so the last step runs on the
#      9 steps' value while B is stopped, but the await of the chain's end
#      does not return while B is stopped (n1's settle records are not at
#      its backup), and returns the right value once B is continued. Failure
#      detection is slowed (--suspicion-mult 16) so that B is not declared
#      dead, and replaced as n1's backup, within those 2 s;
#   4. member death: slow steps (--delay-ms 300) served on H (8 slots) and B
#      (2 slots: n1 places on H, the one with more room); H is SIGKILLed
#      mid-chain: the chain still ends with the right value (each step is
#      deterministic, a step run again gives the same);
#   5. chain_forward=false: nothing is forwarded or started by a member, the
#      chain still ends right.
#   BUILD=build tests/integration/test_chain_forward.sh
. "$(dirname "$0")/mesh_lib.sh"

CHAIN_BIN=$BIN/pmesh_chain
if [ ! -x "$CHAIN_BIN" ]; then
    skip "chain forwarding" "no $CHAIN_BIN (make all builds it)"
    finish
fi

# pick_roles: B (the agent n1 replicates to) and H (the other of n2, n3).
pick_roles() {
    local b deadline=$(($(now_ms) + 10000))
    B="" H=""
    until [ -n "$B" ] || [ "$(now_ms)" -ge "$deadline" ]; do
        b=$(backup_of 1)
        B=${b#n}
        [ -n "$B" ] || sleep 0.1
    done
    case $B in
    2) H=3 ;;
    3) H=2 ;;
    *) B="" ;;
    esac
}

# chain_worker NAME K FUNCTION CONCURRENCY SUFFIX [FLAGS...]: pmesh_chain's
# worker for FUNCTION on nK, appending SUFFIX; waits until it serves and n1
# sees nK offer FUNCTION with CONCURRENCY free slots. Sets WORKER_PID.
chain_worker() {
    local name=$1 k=$2 fn=$3 conc=$4 suffix=$5
    shift 5
    bg "$name" "$CHAIN_BIN" worker --socket "${MESH_SOCK[$k]}" --function "$fn" \
        --concurrency "$conc" --append "$suffix" "$@"
    WORKER_PID=$BG_PID
    need "worker $name serves $fn on n$k" 10 grep -q "serving" "$TMP/$name.log"
    need "n1 sees n$k serve $fn with $conc free slots" 10 _is_fn 1 "n$k" "$fn" "$conc"
}

# build_chain START FN...: on n1, a promise P and one then per FN, each on
# the previous one's target; LAST is the end of the chain. Not resolved.
build_chain() {
    local fn
    pm 1 create
    P=$OUT
    LAST=$P
    for fn in "$@"; do
        # shellcheck disable=SC1010 # `then` is pmesh's command
        pm 1 then "$LAST" "$fn"
        LAST=$OUT
    done
}

# steps N FN: N times FN (for build_chain).
steps() {
    local i
    for ((i = 0; i < $1; i++)); do
        echo "$2"
    done
}

# dots N: N dots (the value N steps of --append . add).
dots() {
    local s="" i
    for ((i = 0; i < $1; i++)); do
        s+=.
    done
    echo "$s"
}

# stat_of K PATH: an integer counter of nK's status (0 if absent).
stat_of() {
    local v
    v=$(mstat "$1" "$2")
    [[ $v =~ ^[0-9]+$ ]] || v=0
    echo "$v"
}

# expect_at_least NAME K PATH N: nK's counter PATH reaches N (within 5 s:
# status is read while the last results may still be on their way).
expect_at_least() {
    if wait_for 5 stat_at_least "${MESH_SOCK[$2]}" "$3" "$4"; then
        ok "$1"
    else
        not_ok "$1" "n$2's $3 is $(stat_of "$2" "$3"), expected at least $4"
    fi
}

# ==== mesh A: default config ==================================================
# A member is declared dead only after about 3.5 s of silence (suspicion 16
# probe periods instead of 3), so that stopping nB for 2 s in case 3 does
# not make n1 choose another backup (which would then make the chain
# durable, and its await return, while nB is still stopped).
mesh_up 3 --replicas 2 --unsafe-no-coordination --suspicion-mult 16
pick_roles
check "n1 replicates to n$B; steps run on n$H" test -n "$H"

# ---- 1. a 10-step chain on a member: forwarded, started there, kept -----------
chain_worker w-step "$H" step 8 .
W_STEP=$WORKER_PID
fwd0=$(stat_of 1 chain.forwarded)
# shellcheck disable=SC2046
build_chain $(steps 10 step)
pm 1 resolve "$P" c1-
expect_eq "1: the start of the chain resolves" 0 "$RC"
pm 1 await "$LAST" --timeout 20s
expect_eq "1: the end of the chain resolves" 0 "$RC"
expect_eq "1: with every step applied once, in order" "c1-$(dots 10)" "$OUT"
expect_eq "1: n1 handed the 9 continuations after the first step on with its invocation" \
    9 $(($(stat_of 1 chain.forwarded) - fwd0))
expect_at_least "1: n$H started 9 of them on its own results" "$H" chain.started 9
expect_at_least "1: n1 kept all 9 (its then placed what n$H had started)" 1 chain.kept 9
expect_eq "1: n1 dropped none" 0 "$(stat_of 1 chain.dropped)"

# ---- 2. a middle step the member cannot run ------------------------------------
chain_worker w-other "$B" other 4 +
kept0=$(stat_of 1 chain.kept)
# shellcheck disable=SC2046
build_chain $(steps 4 step) other $(steps 5 step)
pm 1 resolve "$P" c2-
pm 1 await "$LAST" --timeout 20s
expect_eq "2: the chain with a step on n$B resolves" 0 "$RC"
expect_eq "2: every step ran once, in order, the other one on n$B too" "c2-$(dots 4)+$(dots 5)" "$OUT"
expect_at_least "2: n1 dropped the chained record n$H could not start" 1 chain.dropped 1
expect_at_least "2: n1 kept the 3 steps n$H started before it" 1 chain.kept $((kept0 + 3))
# After the break the rest is handed on again with the next placement (the
# records n$H never started are replaced, place.c s_chain_each): the last
# 4 steps, after the one placed on n$H again, are kept too.
expect_at_least "2: ... and the 4 after the break, handed on again" 1 chain.kept $((kept0 + 7))

# ---- 2b. a chain on the owner's own worker: forwarded to it all the same ---------
# The worker (libpmesh) runs each next step on its own result without the
# round trip to its agent; n1 adopts each one as from a member.
chain_worker w-loc 1 loc 8 ,
fwd0=$(stat_of 1 chain.forwarded) kept0=$(stat_of 1 chain.kept)
started0=$(stat_of 1 chain.started)
# shellcheck disable=SC2046
build_chain $(steps 10 loc)
pm 1 resolve "$P" c6-
pm 1 await "$LAST" --timeout 20s
expect_eq "2b: a chain on n1's own worker resolves" 0 "$RC"
expect_eq "2b: every step ran once, in order" "c6-,,,,,,,,,," "$OUT"
expect_at_least "2b: n1 handed its 9 chained steps on to its own worker" 1 chain.forwarded \
    $((fwd0 + 9))
expect_at_least "2b: ... which started them (chain.started)" 1 chain.started $((started0 + 9))
expect_at_least "2b: ... and n1 kept all 9" 1 chain.kept $((kept0 + 9))
kill "$WORKER_PID" 2>/dev/null || true

# ---- 3. R6: applied at once, visible only once durable --------------------------
# Nine steps on nH, then one (last) on a worker of n1's own, which writes
# the input it gets to a file; n1's backup nB is stopped, so none of n1's
# settle records can be acknowledged by a backup, and n1 answers no request
# meanwhile (every reply waits for the records before it: its counters
# cannot be read). The last step's input shows what n1 applied: n1 invokes
# it only once the ninth step's target has settled there.
# shellcheck disable=SC2016 # expanded by that sh
mesh_worker w-last 1 last 2 sh -c 'tee -a "$0"; printf "!"' "$TMP/last.in"
need "n1 serves last" 10 grep -q "PM-WORKER-REGISTERED function last" "$MESH_DIR/n1.log"
waiters0=$(stat_of 1 clients.waiters)
# shellcheck disable=SC2046
build_chain $(steps 9 step) last
timed_bg await3 1 await "$LAST" --timeout 30s
need_waiters_on 1 $((waiters0 + 1))
kill -STOP "${MESH_PID[$B]}"
stop_ms=$(now_ms)
timed_bg resolve3 1 resolve "$P" c3-
# Within the stop's 2 s (the check must not outlast it: once nB is
# declared dead, n1 replicates to nH and everything becomes durable).
_last_in_is() { [ "$(cat "$TMP/last.in" 2>/dev/null)" = "$1" ]; }
until _last_in_is "c3-$(dots 9)" || [ "$(now_ms)" -ge $((stop_ms + 2000)) ]; do
    sleep 0.05
done
if _last_in_is "c3-$(dots 9)"; then
    ok "3: with n$B stopped, n1 applies the 9 steps' results at once (R6): last runs on them"
else
    not_ok "3: with n$B stopped, n1 applies the 9 steps' results at once (R6): last runs on them" \
        "last got within 2 s: $(cat "$TMP/last.in" 2>/dev/null)"
fi
# Hold the stop for 2 s in all: time passing is what is under test.
left=$((stop_ms + 2000 - $(now_ms)))
[ "$left" -le 0 ] || sleep "$(printf '%d.%03d' $((left / 1000)) $((left % 1000)))"
expect_eq "3: the await of the chain's end has not returned while n$B is stopped" "" \
    "$(done_rc await3)"
expect_eq "3: and has printed nothing" "" "$(cat "$TMP/await3.out")"
expect_eq "3: the resolve of its start is not acknowledged either" "" "$(done_rc resolve3)"
expect_ne "3: (n$H has not declared n$B dead meanwhile)" dead "$(member_field "$H" "n$B" state)"
kill -CONT "${MESH_PID[$B]}"
wait_done 20 await3 resolve3 || true
expect_eq "3: once n$B is back, the await returns" 0 "$(done_rc await3)"
expect_eq "3: with the chain's value" "c3-$(dots 9)!" "$(cat "$TMP/await3.out")"
expect_eq "3: and the resolve of the start is acknowledged" 0 "$(done_rc resolve3)"

# ---- 4. the member running the chain dies -------------------------------------------
# Slow steps on nH (8 slots) and nB (2 slots): n1 places the first step on
# nH, which has more room, and nH runs the chain on; nH is killed mid-chain.
kill -TERM "$W_STEP"
need "the fast step worker is gone from n1's view" 10 _is_fn 1 "n$H" step "<absent>"
chain_worker w-slow-h "$H" step 8 . --delay-ms 300 -v
chain_worker w-slow-b "$B" step 2 . --delay-ms 300 -v
kept0=$(stat_of 1 chain.kept)
dropped0=$(stat_of 1 chain.dropped)
started0=$(stat_of "$H" chain.started)
# shellcheck disable=SC2046
build_chain $(steps 10 step)
pm 1 resolve "$P" c4-
need "4: n1 has applied 3 steps of the chain" 10 stat_at_least "${MESH_SOCK[1]}" chain.kept \
    $((kept0 + 3))
started_h=$(stat_of "$H" chain.started)
kill -KILL "${MESH_PID[$H]}"
started_h=$((started_h - started0))
expect_match "4: n$H ran the chain and is killed mid-chain (it had started 3 to 8 of 9 steps)" \
    '^[3-8]$' "$started_h"
pm 1 await "$LAST" --timeout 30s
expect_eq "4: the chain still resolves" 0 "$RC"
expect_eq "4: with every step applied once, in order" "c4-$(dots 10)" "$OUT"
expect_at_least "4: n1 dropped the chained records that were on n$H" 1 chain.dropped \
    $((dropped0 + 1))
check "4: the rest of the chain ran on n$B" grep -q "answered" "$TMP/w-slow-b.log"
mesh_down

# ==== mesh B: chain_forward=false ================================================
mesh_up 3 --replicas 2 --unsafe-no-coordination --chain-forward=false
chain_worker w-step5 2 step 8 .
# shellcheck disable=SC2046
build_chain $(steps 10 step)
pm 1 resolve "$P" c5-
pm 1 await "$LAST" --timeout 20s
expect_eq "5: chain_forward=false: the chain resolves" 0 "$RC"
expect_eq "5: chain_forward=false: with every step applied once, in order" "c5-$(dots 10)" "$OUT"
expect_eq "5: chain_forward=false: n1 forwarded nothing" 0 "$(stat_of 1 chain.forwarded)"
expect_eq "5: chain_forward=false: n2 started nothing on its own" 0 "$(stat_of 2 chain.started)"
expect_eq "5: chain_forward=false: n1 adopted nothing" 0 "$(stat_of 1 chain.kept)"
mesh_down
finish
