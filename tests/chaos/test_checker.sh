#!/usr/bin/env bash
# test_checker.sh - the chaos checker (chaos_load check) on races: one
# promise resolved at once through two agents with two different values. At
# most one resolve may be acknowledged, and every read must give that one.
#
#  - the load's race scenario against a real agent (--race-pct 100, two
#    clients): every race ends with exactly one resolve acknowledged and the
#    checker passes;
#  - hand-written ack logs against promises of a real agent: two acknowledged
#    resolves with different values, and an unacknowledged race that reads a
#    value nobody sent, must each be reported under "promises with two
#    different outcomes" and fail the check; a race whose one acknowledged
#    value reads back passes.
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
finish
