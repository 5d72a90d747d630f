#!/usr/bin/env bash
# test_checker.sh - the chaos checker (chaos_load check) on races (one
# promise resolved at once through two agents with two different values: at
# most one resolve may be acknowledged, and every read must give that one),
# on combinators and on then --on-reject (issue 15).
#
#  - the load's race scenario against a real agent (--race-pct 100, two
#    clients): every race ends with exactly one resolve acknowledged and the
#    checker passes;
#  - hand-written ack logs against promises of a real agent: two acknowledged
#    resolves with different values, and an unacknowledged race that reads a
#    value nobody sent, must each be reported under "promises with two
#    different outcomes" and fail the check; a race whose one acknowledged
#    value reads back passes;
#  - the load's combinator and on-reject scenarios against the real agent
#    and the chaos worker (inc and fix): every combinator is judged and the
#    check passes;
#  - hand-written logs over real combinators and thens: inputs listed in
#    another order (the value is not what they give), a race reading a list,
#    a combinator that does not exist, an await that got another outcome
#    than the one that reads, a pending promise claimed as a decided
#    combinator, an await that timed out although the inputs had decided it,
#    a combinator timed out by its own deadline although decided in time,
#    and a then on a rejected source that ran inc instead of the on_reject
#    handler: each fails the check under its own line; the true logs pass;
#  - thens on combinators (early starts): the load's are all judged right;
#    then(C, tag, on_reject tagfix) targets logged on another combinator
#    (tag / tagfix ran on another outcome) fail under their own row; and a
#    worker that answers one tag wrong (--wrong-tag 1, on an agent of its
#    own) fails the load's check under that row.
#
# A few seconds; no namespaces (scripts/chaos --mode partition runs races
# across real splits: tests/chaos/README.md).
#
#   BUILD=build tests/chaos/test_checker.sh
. "$(dirname "$0")/../integration/lib.sh"

LOAD=$BIN/chaos_load
[ -x "$LOAD" ] || { echo "no $LOAD; build first" >&2; exit 1; }

# One agent, R=1 (no mesh): the checker reads promises back through it.
start_agent 1 --replicas 1
S=$AGENT_SOCK

# figure FILE LABEL: the first number after LABEL on its line of a report.
figure() {
    awk -v l="$2" 'index($0, l) { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+$/) { print $i; exit } }' "$1"
}

# ---- the load's own races ----------------------------------------------------------------
run "$LOAD" load --sockets "$S,$S" --log "$TMP/race.acks" --duration-ms 2000 --threads 4 \
    --seed 11 --race-pct 100
expect_eq "load with --race-pct 100 exits 0" 0 "$RC"
RACES=$(grep -c ' raced ' "$TMP/race.acks" || true)
expect_lt "... it ran races (got $RACES)" 10 "$RACES"
expect_eq "... each race sent two resolves with two values" "$((2 * RACES))" \
    "$(grep -c ' race resolved ' "$TMP/race.acks" || true)"
expect_eq "... every race: exactly one resolve acknowledged" "$RACES" \
    "$(grep -c ' raced [^ ]* 1$' "$TMP/race.acks" || true)"
expect_match "... the other refused with ALREADY_SETTLED" "refused resolved .* ALREADY_SETTLED" \
    "$(cat "$TMP/race.acks")"
run "$LOAD" check --sockets "$S" --log "$TMP/race.acks" --replicas 1 --read-wait-ms 5000
expect_eq "check of the load's races passes" 0 "$RC"
echo "$OUT" >"$TMP/race.report"
expect_eq "... report: races" "$RACES" "$(figure "$TMP/race.report" "races (one promise")"
expect_eq "... report: exactly one acknowledged" "$RACES" "$(figure "$TMP/race.report" "exactly one resolve")"
expect_eq "... report: both acknowledged" 0 "$(figure "$TMP/race.report" "both acknowledged")"
expect_match "... summary line" "summary: operations [0-9]+, acknowledged [0-9]+, lost 0, conflicting 0, hung 0" "$OUT"

# ---- hand-written logs -------------------------------------------------------------------
# mk VALUE: a promise of the agent resolved with VALUE; sets P.
mk() {
    run "$PMESH" --socket "$S" create
    P=$OUT
    run "$PMESH" --socket "$S" resolve "$P" "$1"
    [ "$RC" = 0 ] || not_ok "resolve $P $1" "$ERR"
}
T=$(now_ms)

# Two acknowledged resolves with different values: the agent keeps one.
mk a1
cat >"$TMP/two.acks" <<EOF
$T 1 create $P 0
$T 1 race resolved $P a1 cut
$T 2 race resolved $P b1 rest
$T 1 resolve $P a1
$T 2 resolve $P b1
$T 1 raced $P 2
EOF
run "$LOAD" check --sockets "$S" --log "$TMP/two.acks" --replicas 1 --read-wait-ms 3000
echo "$OUT" >"$TMP/two.report"
expect_eq "two acknowledged outcomes: the check fails" 1 "$RC"
expect_eq "... counted under two different outcomes" 1 \
    "$(figure "$TMP/two.report" "promises with two different outcomes")"
expect_match "... and named" "$P: acknowledged resolved a1 then resolved b1" "$OUT"
expect_eq "... report: both acknowledged" 1 "$(figure "$TMP/two.report" "both acknowledged")"
expect_eq "... report: one on each side of a split" 1 "$(figure "$TMP/two.report" "one resolve on each side")"
expect_match "... summary: conflicting 1" "summary: .* conflicting 1," "$OUT"

# Nothing acknowledged, but it reads a value neither resolve carried.
mk zz
cat >"$TMP/foreign.acks" <<EOF
$T 1 create $P 0
$T 1 race resolved $P a2 any
$T 2 race resolved $P b2 any
$T 1 refused resolved $P UNREACHABLE
$T 2 refused resolved $P UNREACHABLE
$T 1 raced $P 0
EOF
run "$LOAD" check --sockets "$S" --log "$TMP/foreign.acks" --replicas 1 --read-wait-ms 3000
expect_eq "unacknowledged race reading a value nobody sent: the check fails" 1 "$RC"
expect_match "... named" "$P: raced a2 / b2, none acknowledged, reads resolved zz" "$OUT"

# One acknowledged, the other refused, the acknowledged value reads back;
# plus an unacknowledged race that reads one of its values: both fine.
mk a3
Q=$P
mk b4
cat >"$TMP/good.acks" <<EOF
$T 1 create $Q 0
$T 1 race resolved $Q a3 cut
$T 2 race resolved $Q b3 rest
$T 1 resolve $Q a3
$T 2 refused resolved $Q ALREADY_SETTLED
$T 1 raced $Q 1
$T 1 create $P 0
$T 1 race resolved $P a4 any
$T 2 race resolved $P b4 any
$T 1 refused resolved $P UNREACHABLE
$T 2 refused resolved $P NO_REPLY
$T 1 raced $P 0
EOF
run "$LOAD" check --sockets "$S" --log "$TMP/good.acks" --replicas 1 --read-wait-ms 3000
echo "$OUT" >"$TMP/good.report"
expect_eq "one acknowledged race and one unacknowledged, both read as sent: the check passes" 0 "$RC"
expect_eq "... one acknowledged" 1 "$(figure "$TMP/good.report" "exactly one resolve")"
expect_eq "... none acknowledged" 1 "$(figure "$TMP/good.report" "  none acknowledged")"

# The acknowledged value is not what reads back: a changed outcome.
mk b5
cat >"$TMP/changed.acks" <<EOF
$T 1 create $P 0
$T 1 race resolved $P a5 cut
$T 2 race resolved $P b5 rest
$T 1 resolve $P a5
$T 2 refused resolved $P UNREACHABLE
$T 1 raced $P 1
EOF
run "$LOAD" check --sockets "$S" --log "$TMP/changed.acks" --replicas 1 --read-wait-ms 3000
expect_eq "acknowledged a5 but reads b5: the check fails" 1 "$RC"
expect_match "... named" "$P: acknowledged resolved a5, reads resolved b5" "$OUT"

# ---- combinators and then --on-reject (issue 15) ----------------------------------------
# The chaos worker serves inc (number + 1) and fix ("e<N>" -> 2N) here.
bg cworker "$LOAD" worker --socket "$S" --log "$TMP/w.inv" --delay-ms 0
wait_for 10 grep -q "serving" "$TMP/cworker.log" ||
    not_ok "the chaos worker started" "$(cat "$TMP/cworker.log")"

run "$LOAD" load --sockets "$S,$S,$S" --log "$TMP/fanin.acks" --duration-ms 2500 --threads 3 \
    --seed 12 --only fanin
expect_eq "load --only fanin exits 0" 0 "$RC"
run "$LOAD" load --sockets "$S,$S" --log "$TMP/fanin.acks" --duration-ms 1500 --threads 2 \
    --seed 13 --only catch
expect_eq "load --only catch exits 0" 0 "$RC"
COMBS=$(grep -c ' combine ' "$TMP/fanin.acks" || true)
expect_lt "... it made combinators (got $COMBS)" 5 "$COMBS"
KINDS=$(grep -o ' combine [a-z-]*' "$TMP/fanin.acks" | sort -u | wc -l)
expect_eq "... of every kind" 4 "$KINDS"
expect_lt "... and on-reject thens" 3 \
    "$(grep -c ' then [^ ]* inc [^ ]* fix$' "$TMP/fanin.acks" || true)"
run "$LOAD" check --sockets "$S" --log "$TMP/fanin.acks" --inv "$TMP/w.inv" --replicas 1 \
    --read-wait-ms 8000
echo "$OUT" >"$TMP/fanin.report"
expect_eq "check of the load's combinators and on-reject chains passes" 0 "$RC"
expect_eq "... report: combinators" "$COMBS" "$(figure "$TMP/fanin.report" "combinators (all/any")"
expect_eq "... every one judged" "$COMBS" "$(figure "$TMP/fanin.report" "judged (every input")"
expect_eq "... every one awaited" "$COMBS" \
    "$(figure "$TMP/fanin.report" "awaits on combinators ended")"
expect_lt "... handlers ran on rejected sources" 0 \
    "$(figure "$TMP/fanin.report" "handler ran with its reason")"
# Thens on combinators (early starts): every one judged and right.
CTHENS=$(grep -c ' then [^ ]* tag [^ ]* tagfix$' "$TMP/fanin.acks" || true)
expect_lt "... it chained thens on combinators (got $CTHENS)" 2 "$CTHENS"
expect_eq "... report: thens on combinators" "$CTHENS" \
    "$(figure "$TMP/fanin.report" "thens on combinators (then C tag")"
expect_eq "... every one judged: tag on its value or tagfix on its reason" "$CTHENS" \
    "$(($(figure "$TMP/fanin.report" "tag ran on its value") + \
        $(figure "$TMP/fanin.report" "tagfix ran on its reason")))"
expect_lt "... tagfix ran on failed combinators" 0 \
    "$(figure "$TMP/fanin.report" "tagfix ran on its reason")"
expect_eq "... none on another outcome" 0 \
    "$(figure "$TMP/fanin.report" "thens on combinators that ran on another")"

# cmk [FLAGS]: a promise of the agent (sets P); cset ID resolve|reject VALUE.
cmk() {
    run "$PMESH" --socket "$S" create "$@"
    P=$OUT
}
cset() {
    run "$PMESH" --socket "$S" "$2" "$1" "$3"
    [ "$RC" = 0 ] || not_ok "$2 $1" "$ERR"
}
# settled ID: waits until ID is no longer pending.
settled() {
    need "$1 settles" 10 bash -c \
        "! \"$PMESH\" --socket \"$S\" get \"$1\" | grep -q '\"state\":\"pending\"'"
}
# acks FILE LINE...: an ack log of those lines.
acks() {
    local f=$1
    shift
    printf '%s\n' "$@" >"$f"
}
T=$(now_ms)
cmk; I1=$P
cmk; I2=$P
run "$PMESH" --socket "$S" all "$I1" "$I2"
C=$OUT
cset "$I1" resolve x1
cset "$I2" resolve y2
settled "$C"
IN=("$T 1 create $I1 0" "$T 1 create $I2 0" "$T 2 resolve $I1 x1" "$T 2 resolve $I2 y2")

# The true log passes; the same combinator claimed over its inputs in the
# other order reads a value they do not give.
acks "$TMP/comb-good.acks" "${IN[@]}" "$T 3 combine all $C 0 $T $I1,$I2"
run "$LOAD" check --sockets "$S" --log "$TMP/comb-good.acks" --replicas 1 --read-wait-ms 3000
expect_eq "all over two resolved inputs, logged as made: the check passes" 0 "$RC"
acks "$TMP/comb-order.acks" "${IN[@]}" "$T 3 combine all $C 0 $T $I2,$I1"
run "$LOAD" check --sockets "$S" --log "$TMP/comb-order.acks" --replicas 1 --read-wait-ms 3000
echo "$OUT" >"$TMP/comb-order.report"
expect_eq "all whose value is not its inputs' values in order: the check fails" 1 "$RC"
expect_eq "... counted under combinators reading what their inputs do not give" 1 \
    "$(figure "$TMP/comb-order.report" "combinators reading what")"
expect_match "... named" \
    "$C = all\($I2=resolved:y2,$I1=resolved:x1\) reads resolved .*not the inputs' values in order" "$OUT"
expect_match "... summary: conflicting 1" "summary: .* conflicting 1," "$OUT"
# A race over the same inputs cannot read a list.
acks "$TMP/comb-race.acks" "${IN[@]}" "$T 3 combine race $C 0 $T $I1,$I2"
run "$LOAD" check --sockets "$S" --log "$TMP/comb-race.acks" --replicas 1 --read-wait-ms 3000
expect_eq "race reading no input's outcome: the check fails" 1 "$RC"
expect_match "... named" "$C = race\(.*\) reads .*not the outcome of any input" "$OUT"

# One input unknown (its create is not in the log): the known one still
# binds its place in the list.
acks "$TMP/comb-part.acks" "$T 1 create $I2 0" "$T 2 resolve $I2 y2" \
    "$T 3 combine all $C 0 $T $I1,$I2"
run "$LOAD" check --sockets "$S" --log "$TMP/comb-part.acks" --replicas 1 --read-wait-ms 3000
echo "$OUT" >"$TMP/comb-part.report"
expect_eq "all with one input unknown, the known one in its place: the check passes" 0 "$RC"
expect_eq "... judged in part" 1 "$(figure "$TMP/comb-part.report" "judged in part")"
acks "$TMP/comb-partbad.acks" "$T 1 create $I2 0" "$T 2 resolve $I2 y2" \
    "$T 3 combine all $C 0 $T $I2,$I1"
run "$LOAD" check --sockets "$S" --log "$TMP/comb-partbad.acks" --replicas 1 --read-wait-ms 3000
expect_eq "all with one input unknown, the known one's value out of place: the check fails" 1 "$RC"
expect_match "... named" "$C = all\($I2=resolved:y2,$I1=\?:\?\) reads resolved" "$OUT"

# An acknowledged combinator that does not exist: lost.
acks "$TMP/comb-lost.acks" "${IN[@]}" "$T 3 combine any ${C}9 0 $T $I1,$I2"
run "$LOAD" check --sockets "$S" --log "$TMP/comb-lost.acks" --replicas 1 --read-wait-ms 2000
echo "$OUT" >"$TMP/comb-lost.report"
expect_eq "an acknowledged combinator that reads NOT_FOUND: the check fails" 1 "$RC"
expect_eq "... counted under acknowledged combinators lost" 1 \
    "$(figure "$TMP/comb-lost.report" "acknowledged combinators lost")"
expect_match "... summary: lost 1" "summary: .* lost 1," "$OUT"

# An await of it that got another outcome than the one that reads.
acks "$TMP/comb-two.acks" "${IN[@]}" "$T 3 combine all $C 0 $T $I1,$I2" \
    "$T 4 await $C 5000 20 -1 fanin resolved [\"x1\",\"z9\"]"
run "$LOAD" check --sockets "$S" --log "$TMP/comb-two.acks" --replicas 1 --read-wait-ms 3000
echo "$OUT" >"$TMP/comb-two.report"
expect_eq "an await that got another outcome than reads: the check fails" 1 "$RC"
expect_eq "... counted under combinators with two outcomes" 1 \
    "$(figure "$TMP/comb-two.report" "combinators with two outcomes")"
expect_match "... named" "$C via n4: an await got resolved \[\"x1\",\"z9\"\]" "$OUT"
# The await got what reads: fine.
acks "$TMP/comb-one.acks" "${IN[@]}" "$T 3 combine all $C 0 $T $I1,$I2" \
    "$T 4 await $C 5000 20 -1 fanin resolved [\"x1\",\"y2\"]"
run "$LOAD" check --sockets "$S" --log "$TMP/comb-one.acks" --replicas 1 --read-wait-ms 3000
expect_eq "an await that got what reads: the check passes" 0 "$RC"

# A promise nobody settles, claimed as a combinator its inputs decided:
# still pending (hung).
cmk; H=$P
acks "$TMP/comb-hung.acks" "${IN[@]}" "$T 3 combine all-settled $H 0 $T $I1,$I2"
run "$LOAD" check --sockets "$S" --log "$TMP/comb-hung.acks" --replicas 1 --read-wait-ms 2000
echo "$OUT" >"$TMP/comb-hung.report"
expect_eq "a combinator every input decided that reads pending: the check fails" 1 "$RC"
expect_eq "... counted under combinators decided, still pending" 1 \
    "$(figure "$TMP/comb-hung.report" "combinators decided, still pending")"
expect_match "... summary: hung 1" "summary: .* hung 1," "$OUT"

# An await that timed out 5 s after its start although the inputs had
# decided the combinator when it started.
acks "$TMP/comb-missed.acks" "${IN[@]}" "$T 3 combine all $C 0 $T $I1,$I2" \
    "$((T + 5000)) 4 await $C 5000 5000 -1 fanin WAIT_TIMEOUT -"
run "$LOAD" check --sockets "$S" --log "$TMP/comb-missed.acks" --replicas 1 --read-wait-ms 3000
echo "$OUT" >"$TMP/comb-missed.report"
expect_eq "an await on a decided combinator that timed out: the check fails" 1 "$RC"
expect_eq "... counted under awaits on combinators that missed their outcome" 1 \
    "$(figure "$TMP/comb-missed.report" "awaits on combinators that missed")"
# ... unless the awaiting agent was paused meanwhile.
acks "$TMP/stop.events" "$((T + 100)) stop 4" "$((T + 3000)) cont 4"
run "$LOAD" check --sockets "$S" --log "$TMP/comb-missed.acks" --events "$TMP/stop.events" \
    --replicas 1 --read-wait-ms 3000
expect_eq "... excused when its agent was SIGSTOPped meanwhile" 0 "$RC"

# A combinator timed out by its own deadline (400 ms) although its input
# was (as logged) settled 10 s before it was made.
cmk; I3=$P
run "$PMESH" --socket "$S" race "$I3" --timeout 400ms
CT=$OUT
settled "$CT"
cset "$I3" resolve late
acks "$TMP/comb-late.acks" "$((T - 10000)) 1 create $I3 0" "$((T - 10000)) 2 resolve $I3 late" \
    "$T 3 combine race $CT 400 $T $I3"
run "$LOAD" check --sockets "$S" --log "$TMP/comb-late.acks" --replicas 1 --read-wait-ms 3000
echo "$OUT" >"$TMP/comb-late.report"
expect_eq "a combinator that timed out although decided in time: the check fails" 1 "$RC"
expect_eq "... counted under combinators timed out although decided" 1 \
    "$(figure "$TMP/comb-late.report" "combinators timed out although")"
# Logged as it happened (the input settled after the deadline): fine.
acks "$TMP/comb-ontime.acks" "$T 1 create $I3 0" "$T 3 combine race $CT 400 $T $I3" \
    "$(now_ms) 2 resolve $I3 late"
run "$LOAD" check --sockets "$S" --log "$TMP/comb-ontime.acks" --replicas 1 --read-wait-ms 3000
expect_eq "a combinator timed out before its input settled: the check passes" 0 "$RC"

# then --on-reject: the handler ran on the rejected source (passes). A
# target that inc made (it failed on e21), logged as then(K2, inc,
# on_reject fix) of a rejected K2, fails: inc ran where fix should have
# (from the worker's log, and from what it reads).
cmk; J=$P
run "$PMESH" --socket "$S" then "$J" inc --on-reject fix
JF=$OUT
cmk; K=$P
run "$PMESH" --socket "$S" then "$K" inc
KI=$OUT
cmk; K2=$P
cset "$J" reject e21
cset "$K" resolve e21
cset "$K2" reject e21
settled "$JF"
settled "$KI"
run "$PMESH" --socket "$S" get "$JF"
expect_eq "the handler fix ran on e21" 42 "$(json_get "$OUT" value)"
acks "$TMP/catch-good.acks" "$T 1 create $J 0" "$T 1 then $J inc $JF fix" "$T 1 reject $J e21"
run "$LOAD" check --sockets "$S" --log "$TMP/catch-good.acks" --inv "$TMP/w.inv" --replicas 1 \
    --read-wait-ms 3000
expect_eq "then --on-reject on a rejected source that ran the handler: the check passes" 0 "$RC"
acks "$TMP/catch-bad.acks" "$T 1 create $K2 0" "$T 1 then $K2 inc $KI fix" "$T 1 reject $K2 e21"
run "$LOAD" check --sockets "$S" --log "$TMP/catch-bad.acks" --inv "$TMP/w.inv" --replicas 1 \
    --read-wait-ms 3000
echo "$OUT" >"$TMP/catch-bad.report"
expect_eq "a then on a rejected source that ran inc, not the handler: the check fails" 1 "$RC"
expect_eq "... counted under on-reject thens that ran inc" 1 \
    "$(figure "$TMP/catch-bad.report" "on-reject thens that ran inc")"
expect_match "... named, from the worker's log" \
    "$KI = then\($K2, inc, on_reject fix\): the worker ran inc" "$OUT"
run "$LOAD" check --sockets "$S" --log "$TMP/catch-bad.acks" --replicas 1 --read-wait-ms 3000
expect_eq "... and without the worker's log, from what it reads" 1 "$RC"
expect_match "... named" \
    "$KI = then\($K2, inc, on_reject fix\) reads rejected .*the main function ran" "$OUT"

# then(C, tag, on_reject tagfix) on real combinators: on the resolved all
# (C) tag runs on its value, on a race of a rejected input (CR) tagfix on
# its reason; both true logs pass. The target of one logged as the then of
# the other (the function ran on another outcome) fails under its row.
cmk; R1=$P
run "$PMESH" --socket "$S" race "$R1"
CR=$OUT
run "$PMESH" --socket "$S" then "$C" tag --on-reject tagfix
TC=$OUT
run "$PMESH" --socket "$S" then "$CR" tag --on-reject tagfix
TR=$OUT
cset "$R1" reject why7
settled "$TC"
settled "$TR"
run "$PMESH" --socket "$S" get "$TC"
expect_eq "tag ran on the all's value" 'tag:["x1","y2"]' "$(json_get "$OUT" value)"
run "$PMESH" --socket "$S" get "$TR"
expect_eq "tagfix ran on the race's reason" 'fix:why7' "$(json_get "$OUT" value)"
CIN=("${IN[@]}" "$T 1 create $R1 0" "$T 2 reject $R1 why7" "$T 3 combine all $C 0 $T $I1,$I2"
    "$T 3 combine race $CR 0 $T $R1")
acks "$TMP/cthen-good.acks" "${CIN[@]}" "$T 3 then $C tag $TC tagfix" "$T 3 then $CR tag $TR tagfix"
run "$LOAD" check --sockets "$S" --log "$TMP/cthen-good.acks" --replicas 1 --read-wait-ms 3000
echo "$OUT" >"$TMP/cthen-good.report"
expect_eq "thens on combinators that ran on their final outcomes: the check passes" 0 "$RC"
expect_eq "... one tag on a value" 1 "$(figure "$TMP/cthen-good.report" "tag ran on its value")"
expect_eq "... one tagfix on a reason" 1 \
    "$(figure "$TMP/cthen-good.report" "tagfix ran on its reason")"
acks "$TMP/cthen-bad.acks" "${CIN[@]}" "$T 3 then $C tag $TR tagfix" "$T 3 then $CR tag $TC tagfix"
run "$LOAD" check --sockets "$S" --log "$TMP/cthen-bad.acks" --replicas 1 --read-wait-ms 3000
echo "$OUT" >"$TMP/cthen-bad.report"
expect_eq "thens on combinators that read another outcome's result: the check fails" 1 "$RC"
expect_eq "... counted under thens on combinators that ran on another outcome" 2 \
    "$(figure "$TMP/cthen-bad.report" "thens on combinators that ran on another")"
expect_match "... named" "$TR = then\($C, tag, on_reject tagfix\) reads resolved fix:why7, expected resolved tag:" "$OUT"
expect_match "... summary: conflicting 2" "summary: .* conflicting 2," "$OUT"
# An input of the combinator not known (its create is not in the log): not
# judged, whatever the target reads.
acks "$TMP/cthen-unk.acks" "$T 1 create $I2 0" "$T 2 resolve $I2 y2" \
    "$T 3 combine all $C 0 $T $I1,$I2" "$T 3 then $C tag $TR tagfix"
run "$LOAD" check --sockets "$S" --log "$TMP/cthen-unk.acks" --replicas 1 --read-wait-ms 3000
echo "$OUT" >"$TMP/cthen-unk.report"
expect_eq "a then on a combinator with an input not known: the check passes" 0 "$RC"
expect_eq "... not judged" 1 "$(figure "$TMP/cthen-unk.report" "not judged (combinator or an")"

# A deliberately broken worker (--wrong-tag 1: its first tag answers "tag:"
# alone) on an agent of its own: the load's thens on combinators catch it.
start_agent 2 --replicas 1
S2=$AGENT_SOCK
bg bworker "$LOAD" worker --socket "$S2" --log "$TMP/wb.inv" --delay-ms 0 --wrong-tag 1
wait_for 10 grep -q "serving" "$TMP/bworker.log" ||
    not_ok "the broken worker started" "$(cat "$TMP/bworker.log")"
run "$LOAD" load --sockets "$S2,$S2,$S2" --log "$TMP/broken.acks" --duration-ms 2500 \
    --threads 3 --seed 14 --only fanin
expect_eq "load --only fanin against the broken worker exits 0" 0 "$RC"
need "the broken worker answered a tag wrong" 10 grep -q "wrong-tag" "$TMP/bworker.log"
run "$LOAD" check --sockets "$S2" --log "$TMP/broken.acks" --inv "$TMP/wb.inv" --replicas 1 \
    --read-wait-ms 8000
echo "$OUT" >"$TMP/broken.report"
expect_eq "a worker that answered one tag wrong: the check fails" 1 "$RC"
expect_eq "... counted under thens on combinators that ran on another outcome" 1 \
    "$(figure "$TMP/broken.report" "thens on combinators that ran on another")"
expect_match "... named" "reads resolved tag:, expected resolved tag:" "$OUT"
finish
