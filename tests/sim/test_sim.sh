#!/usr/bin/env bash
# test_sim.sh - the simulator's short run for `make check` (issue 14):
# determinism (one seed twice, the same trace), the regression seeds of the
# bugs it found, a batch of fresh seeds with every fault kind, and a
# self-test that the checker flags a changed acknowledgement and a lost
# answer (L1). Agents run the WAL with fsync always or batch (group commit,
# its fsync thread simulated), drawn per seed (--fsync mixed, the default).
# One process, no sockets, no background processes (nothing to stop).
# ~1.5 minutes.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
SIM=$BUILD/bin/pmesh-sim
SEEDS=${SIM_CHECK_SEEDS:-200}
FIRST=${SIM_CHECK_FIRST:-1}
# Seeds that still fail: open bugs the simulator found, not fixed yet
# (tests/sim/README.md, "Open findings"). Run and shown as skipped; when one
# starts to hold, the test says so (move it to the regression list).
KNOWN_OPEN=""
if [ ! -x "$SIM" ]; then
    echo "test_sim.sh: no $SIM; build first (make BUILD=$BUILD)" >&2
    exit 1
fi
pass=0
fail=0
skip=0
ok() { echo "ok - $1"; pass=$((pass + 1)); }
notok() { echo "not ok - $1"; fail=$((fail + 1)); }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pmesh-sim.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# 1. The same seed gives the same run, bit for bit (the trace hash covers
# every fault, request and answer, and the network's counters).
"$SIM" --seed 7 >"$tmp/a" 2>&1
ra=$?
"$SIM" --seed 7 >"$tmp/b" 2>&1
rb=$?
la=$(grep '^seed 7:' "$tmp/a" | head -1)
lb=$(grep '^seed 7:' "$tmp/b" | head -1)
if [ -n "$la" ] && [ "$la" = "$lb" ] && echo "$la" | grep -q 'trace [0-9a-f]\{16\}'; then
    ok "seed 7 replays identically ($(echo "$la" | grep -o 'trace [0-9a-f]*'))"
else
    notok "seed 7 replays identically"
    diff "$tmp/a" "$tmp/b" | head -20
fi
# Batch mode (group commit) replays bit for bit too: its fsync thread is
# simulated on the agent's clock and the seed's schedule.
"$SIM" --seed 7 --fsync batch >"$tmp/ba" 2>&1
"$SIM" --seed 7 --fsync batch >"$tmp/bb" 2>&1
ba=$(grep '^seed 7:' "$tmp/ba" | head -1)
bb=$(grep '^seed 7:' "$tmp/bb" | head -1)
if [ -n "$ba" ] && [ "$ba" = "$bb" ] && echo "$ba" | grep -q '(7 fsync batch)' &&
    [ "$(echo "$ba" | grep -o 'trace [0-9a-f]*')" != "$(echo "$la" | grep -o 'trace [0-9a-f]*')" ]; then
    ok "seed 7 with fsync batch replays identically ($(echo "$ba" | grep -o 'trace [0-9a-f]*'))"
else
    notok "seed 7 with fsync batch replays identically (and differs from always)"
    diff "$tmp/ba" "$tmp/bb" | head -5
fi
# A different seed is a different run.
"$SIM" --seed 8 >"$tmp/c" 2>&1
lc=$(grep '^seed 8:' "$tmp/c" | grep -o 'trace [0-9a-f]*')
if [ -n "$lc" ] && [ "$lc" != "$(echo "$la" | grep -o 'trace [0-9a-f]*')" ]; then
    ok "seed 8 differs from seed 7"
else
    notok "seed 8 differs from seed 7"
fi

# The regression seeds below were found before the fan-in load chained a
# then on its combinators (early starts, issue 15) and before thens were
# chained at once on a then's target (chain forwarding, issue 16): they run
# with that load (--no-fanin-then --no-then-chains), so their schedules stay
# as they were found.
OLD_LOAD="--no-fanin-then --no-then-chains"
# Every regression seed was found before an agent sent what one turn of its
# loop has for a peer as one frame (mesh_batch): they run with every message
# its own frame (--no-mesh-batch), the schedules they were found with. The
# fresh seeds (section 3) run batched, as agents do.
UNBATCHED="--no-mesh-batch"
# 2. Regression seeds, each a bug the simulator found (tests/sim/README.md),
# found with fsync always and run so (their schedules as they were found):
# 2 = use after free of relay timers in pm_agent_destroy (under ASan);
# 7, 8, 10, 18, 20 = a fenced agent minted then-targets in the space it lost.
# 130, 241, 1139 (within R) = a then's function ran on a settle never
# replicated (V6; thens.c holds the invocation until it is); 107, 116, 117 =
# a combinator heard an input's transient error as its rejection (V4;
# found with a first draft of the fan-in load, which the final load no
# longer reproduces exactly).
for s in 2 7 8 10 18 20 36 107 114 116 117 130 132 144 156 241 1000 1024 1034 1139 2240 \
    2662 3727; do
    if [ "$s" = 7 ]; then rc=$ra; out=$tmp/a; else
        "$SIM" --seed "$s" --fsync always $OLD_LOAD $UNBATCHED >"$tmp/r$s" 2>&1
        rc=$?
        out=$tmp/r$s
    fi
    if [ "$rc" -eq 0 ] && grep -q "^seed $s: .* 0 violations" "$out"; then
        ok "regression seed $s holds every invariant"
    else
        notok "regression seed $s holds every invariant"
        grep -E 'first violated|VIOLATION|ERROR|Sanitizer' "$out" | head -5
    fi
done

# 2a. Regression seeds found with fsync batch (group commit; run so):
# 5943 = a restarted owner took a stale owner's records (epoch 2, sent at a
# heal) over its own newer copy before it knew any epoch of the space, and
# resumed from them: an acknowledged settle replaced (V2, V3, V6; takeover.c
# fences with the epochs its WAL's claims say its previous process served).
# regress SEED MODE [LOAD]: seed SEED run with --fsync MODE holds every
# invariant; LOAD: the sim's load flags (default $OLD_LOAD; "" for the load
# with thens on combinators, for seeds found with it).
regress() {
    local s=$1 mode=$2 load=$OLD_LOAD
    [ $# -ge 3 ] && load=$3
    # shellcheck disable=SC2086
    "$SIM" --seed "$s" --fsync "$mode" $load $UNBATCHED >"$tmp/r-$mode-$s" 2>&1
    if [ $? -eq 0 ] && grep -q "^seed $s: .* 0 violations" "$tmp/r-$mode-$s"; then
        ok "regression seed $s (fsync $mode) holds every invariant"
    else
        notok "regression seed $s (fsync $mode) holds every invariant"
        grep -E 'first violated|VIOLATION|ERROR|Sanitizer' "$tmp/r-$mode-$s" | head -5
    fi
}
regress 5943 batch

# 2b. Seeds of the mixed mode (fsync drawn per seed; for 378 and 2717 batch on every
# agent) once open findings, holding since the result guard and the id-space
# work (not traced to one fix; tests/sim/README.md):
# 378 (L5) = an all-settled combinator made at n0 just before n0 was paused
# (and the store crashed) stayed pending although its inputs read settled;
# 2717 (L2) = a then's target q stayed pending after its source timed out
# (n3 killed, n4 took q's space, n3 took p's).
regress 378 mixed
regress 2717 mixed
# 3439 (mixed, beyond R) = a race decided its input NOT_FOUND after its 10 s
# wait, and the pipelined then that mints that input, parked and re-sent, was
# applied at its owner later (V4; the owner now records a missing input as
# rejected NOT_FOUND before the combinator hears it, and a late mint of it is
# refused: fanins.c). With fsync always its schedule does not show the bug.
regress 3439 mixed
# 4710, 5966 (mixed, beyond R) = an heir handed a space back (R8) to the home
# node's same process that had owned it, alive but cut off and taken for dead
# by an earlier heir, still serving the space at its old epoch: named owner
# again it went on serving its old copy, its backups refused its records for
# good and hundreds of reads went unanswered (L1 silent; isr.c: R8 never
# hands a space to a process it saw recorded as its owner).
regress 4710 mixed
regress 5966 mixed
# 8732 (mixed, within R) = a then p -> q across id spaces (p in a space n2
# had taken over, q in n2's own): n2 placed the on_reject handler g, was
# paused, and p's space moved to n1 at epoch 3 while q's stayed at n2; n2
# then forgot its placement (its result guard checked p's space too), its
# worker had died holding g, and nobody ran g again: q pending for good (L2;
# place.c R5: once the placement's position is covered, only the target's
# space guards its result).
regress 8732 mixed
# 8685 (mixed, V6) = a then's on_reject handler g started early on its
# source combinator's guessed rejection (fan-in early starts) was placed on
# n4; n4 went down and the placer placed it again as a placement of its own,
# which settled the target although the combinator then timed out
# (takeover.c: an early placement whose member dies is dropped; the then
# places g when its source settles).
regress 8685 mixed --no-then-chains
# 7972 (mixed, within R; the load with thens on combinators) = a then p -> q
# made at n3 while n3 served p's space (taken from n2); n3 was killed, p's
# space went to n0 at epoch 3 and p timed out there; n3 restarted, resumed
# q's space and revived the then on its own passive copy of p, which never
# heard the timeout: q pending for good (L2; thens.c: a then whose source's
# space is served elsewhere subscribes to the source at its owner).
regress 7972 mixed --no-then-chains
# 4752 (mixed, V6; the load with chained thens) = n0, cut off (outgoing),
# applied p = then(x, f) and q = then(p, f) from a chained step at once
# (R6), never acknowledged; n2 took the space over, p was settled v1 there;
# n0, n2's backup from then on, kept its own q settled from p's lost value
# (a create record of a promise the copy held settled changed nothing), took
# the space over again and n3 after it: q read f:f:v2 with p v1. A copy's
# settled promise whose owner streams it pending goes pending (records.c).
regress 4752 mixed ""

# 3. A batch of fresh seeds with overlapping faults of every kind.
# The simulated worker pings at its hello, as libpmesh does: without it a
# worker dying in the round it registered was never expired (seed 8, L2).
"$SIM" --seed 8 --fsync always --no-faults --strict-liveness $UNBATCHED >"$tmp/w8" 2>&1
if [ $? -eq 0 ] && grep -q '^seed 8: .*liveness 0[^,]*, 0 violations' "$tmp/w8"; then
    ok "regression seed 8 without faults: every chain completes (strict liveness)"
else
    notok "regression seed 8 without faults: every chain completes (strict liveness)"
    grep -E 'first violated' "$tmp/w8" | head -2
fi

# A relayed settle (an invocation's result) answered UNAVAILABLE is sent
# again: before, it was dropped and the chain stayed pending (seed 5014, L2).
"$SIM" --seed 5014 --fsync always --faults kill,split2,split1,pause,storecrash,dup,reorder,delay $UNBATCHED \
    --strict-liveness >"$tmp/f5014" 2>&1
if [ $? -eq 0 ] && grep -q '^seed 5014: .*liveness 0[^,]*, 0 violations' "$tmp/f5014"; then
    ok "regression seed 5014 (new fault kinds): every chain completes (strict liveness)"
else
    notok "regression seed 5014 (new fault kinds): every chain completes (strict liveness)"
    grep -E 'first violated' "$tmp/f5014" | head -2
fi

"$SIM" --seeds "$SEEDS" --first "$FIRST" >"$tmp/batch" 2>&1
rc=$?
sum=$(tail -1 "$tmp/batch")
echo "# $sum"
# A seed of the batch that is a known open finding fails as described: it
# is shown (and run again below); any other failing seed fails the test.
failed=$(grep -o '^seed [0-9]*: first violated' "$tmp/batch" | grep -o '[0-9]*' | tr '\n' ' ')
unknown=""
for s in $failed; do
    case " $KNOWN_OPEN " in *" $s "*) ;; *) unknown="$unknown $s" ;; esac
done
if [ "$rc" -eq 0 ] && echo "$sum" | grep -q "^$SEEDS seeds, 0 violations"; then
    ok "$SEEDS seeds, 0 violations"
elif [ -n "$failed" ] && [ -z "$unknown" ]; then
    ok "$SEEDS seeds, no violation but in the known open seeds ($failed) # TODO open findings"
    grep -E 'first violated' "$tmp/batch" | cut -c1-300
else
    notok "$SEEDS seeds, 0 violations (failed:${unknown:- ?})"
    grep -E 'first violated' "$tmp/batch" | head -5
fi
kinds_ok=1
for k in "kills" "wiped disks" "pauses" "two-way splits" "one-way splits" "lossy spells" \
    "store outages" "slow-store spells" "clock jumps" "slow-fsync spells" "delay spells" \
    "reorder spells" "duplication spells" "store crashes" "delayed" \
    "reordered" "duplicated"; do
    n=$(echo "$sum" | grep -o "[0-9]* $k" | grep -o '^[0-9]*' | head -1 || true)
    if [ -z "$n" ] || [ "$n" -eq 0 ]; then
        kinds_ok=0
        echo "# no $k injected"
    fi
done
# Batch mode ran, and its window was hit: kills while a group fsync was in
# flight, losing log bytes written but not yet fsynced.
bline=$(echo "$sum" | grep -o 'fsync batch: [^;]*;' || true)
bagents=$(echo "$bline" | grep -o 'batch: [0-9]*' | grep -o '[0-9]*$' || true)
bflight=$(echo "$bline" | grep -o '[0-9]* kills with one in flight' | grep -o '^[0-9]*' || true)
bbytes=$(echo "$bline" | grep -o '([0-9]* bytes)' | grep -o '[0-9]*' || true)
if [ "${bagents:-0}" -gt 0 ] && [ "${bflight:-0}" -gt 0 ] && [ "${bbytes:-0}" -gt 0 ]; then
    ok "fsync batch exercised: ${bline%;}"
else
    notok "fsync batch exercised (${bline:-no fsync batch figures})"
fi
checked=$(echo "$sum" | grep -o '[0-9]* promises checked' | grep -o '^[0-9]*' || echo 0)
if [ "$kinds_ok" = 1 ] && [ "$checked" -gt 0 ]; then
    ok "every fault kind injected, $checked promises read back"
else
    notok "every fault kind injected, promises read back"
fi

# 4. The checker is not blind: a misremembered acknowledgement is a V2
# violation, printed with the seed's schedule, and exit status 1.
"$SIM" --seed 3 --break-ack >"$tmp/self" 2>&1
rc=$?
if [ "$rc" -eq 1 ] && grep -q 'first violated invariant: V2' "$tmp/self" &&
    grep -q 'schedule' "$tmp/self"; then
    ok "a changed acknowledgement fails the seed (V2, schedule printed, exit 1)"
else
    notok "a changed acknowledgement fails the seed (rc $rc)"
    tail -5 "$tmp/self"
fi

# 4a. Combinators are judged (issue 15): the batch judged some, and the
# checker is not blind to a combinator reading what its inputs do not give
# (self-test: one judged combinator misread) nor to on_reject handlers.
combs=$(echo "$sum" | grep -o '[0-9]* judged' | grep -o '^[0-9]*' || echo 0)
catches=$(echo "$sum" | grep -o '[0-9]* on_reject handlers checked' | grep -o '^[0-9]*' || echo 0)
if [ "${combs:-0}" -gt 0 ] && [ "${catches:-0}" -gt 0 ]; then
    ok "combinators judged by their inputs: $combs; on_reject handlers checked: $catches"
else
    notok "combinators judged (${combs:-0}) and on_reject handlers checked (${catches:-0})"
fi
"$SIM" --seed 3 --break-fanin >"$tmp/self3" 2>&1
rc=$?
if [ "$rc" -eq 1 ] && grep -q 'first violated invariant: V4' "$tmp/self3" &&
    grep -q 'self-test: combinator' "$tmp/self3"; then
    ok "a combinator misread fails the seed (V4, exit 1)"
else
    notok "a combinator misread fails the seed (rc $rc)"
    tail -5 "$tmp/self3"
fi

# 4b. Liveness is checked too: an answer lost on its way from a live agent
# (self-test) is an L1 failure, and fails the seed (the default; --strict-liveness says so).
# (Seed 4, fsync always: with batch, or since results are guarded by their
# placer, seed 3's schedule kills that agent before the lost answer's bound,
# and a broken connection is no silence.)
"$SIM" --seed 4 --fsync always --break-reply --strict-liveness >"$tmp/self2" 2>&1
rc=$?
if [ "$rc" -eq 1 ] && grep -q 'first violated invariant: L1 silent' "$tmp/self2"; then
    ok "a lost answer fails the seed (L1 silent, exit 1)"
else
    notok "a lost answer fails the seed (rc $rc)"
    tail -5 "$tmp/self2"
fi
lv=$(echo "$sum" | grep -o '[0-9]* liveness failures' | grep -o '^[0-9]*' || echo x)
dl=$(echo "$sum" | grep -o '[0-9]* deadlines and [0-9]* chains' || true)
if [ "$lv" != x ] && [ -n "$dl" ]; then
    # (within R every L1-L5 failure is a violation, counted above; beyond R only
    # a silent request is, and the rest is reported here)
    ok "liveness checked (failing the seed by default): $dl; $lv reported beyond R"
else
    notok "the summary reports liveness (${dl:-no liveness figures})"
fi
# ... and --lenient-liveness only reports it.
"$SIM" --seed 4 --fsync always --break-reply --lenient-liveness >"$tmp/self2b" 2>&1
rc=$?
if [ "$rc" -eq 0 ] && grep -q ' 0 violations (0 seeds failed), 1 liveness failures' "$tmp/self2b"; then
    ok "--lenient-liveness reports a lost answer without failing the seed"
else
    notok "--lenient-liveness reports a lost answer without failing the seed (rc $rc)"
fi

# 4c. L4 (issue 11): an await that timed out although its promise's settle
# was acknowledged, every fault healed, more than 1 s before its timeout.
# Seeds 38 and 225 did that before subscriptions were sent again (an await's
# subscription lost on a cut link just before the heal, never resent).
for s in 38 225; do
    "$SIM" --seed "$s" --fsync always --strict-liveness $UNBATCHED >"$tmp/l4-$s" 2>&1
    if grep -q "^seed $s: " "$tmp/l4-$s" && ! grep -q 'L4 await' "$tmp/l4-$s"; then
        ok "regression seed $s: no await misses an acknowledged settle (L4)"
    else
        notok "regression seed $s: no await misses an acknowledged settle (L4)"
        grep -E 'L4 await' "$tmp/l4-$s" | head -3
    fi
done

# 4d. The restart storm (issue 14's scale mode, short): n0 killed and
# restarted 200 times while the load goes on. It must still serve (probe
# creates acknowledged), be seen alive by every agent, and its id spaces
# and the store's records of them stay bounded (the checker's bound, 32):
# each restart mints in the space its predecessor minted in, and the
# predecessor's empty primary is retired at once (node/mint.h). Before
# that fix, 60 restarts left about 50 spaces behind.
"$SIM" --seed 1 --nodes 3 --restarts 200 >"$tmp/storm" 2>&1
line=$(grep '^restart storm:' "$tmp/storm")
spaces=$(echo "$line" | grep -o 'its id spaces at the end [0-9]*' | grep -o '[0-9]*$')
if echo "$line" | grep -q '^restart storm: 200 restarts of n0' &&
    echo "$line" | grep -q 'probes [1-9][0-9]*/5 acknowledged' &&
    echo "$line" | grep -q 'seen alive by 2/2 agents' &&
    grep -q '^1 seeds, 0 violations' "$tmp/storm"; then
    ok "restart storm: n0 serves, is seen alive and holds $spaces id spaces after 200 restarts"
else
    notok "restart storm: n0 serves, is seen alive and its id spaces stay bounded after 200 restarts"
    echo "${line:-no storm line}"
    grep -m3 'VIOLATION' "$tmp/storm"
fi

# 5. The open findings: still failing as described, or fixed.
for s in $KNOWN_OPEN; do
    "$SIM" --seed "$s" >"$tmp/k$s" 2>&1
    why=$(grep -o 'first violated invariant: [VL][0-9][^;(]*' "$tmp/k$s" | head -1 | cut -c27-100)
    if [ -n "$why" ]; then
        echo "ok - known open seed $s # SKIP still fails: $why"
        skip=$((skip + 1))
    else
        echo "ok - known open seed $s now holds every invariant: move it to the regression seeds"
        pass=$((pass + 1))
    fi
done

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
