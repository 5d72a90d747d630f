#!/usr/bin/env bash
# test_held_reply.sh - a reply held for durability ends in a typed error, not
# silence (issue 14: "every operation ends with a typed error, never with a
# wrong answer or silence").
#
# At R=2 an owner answers a create only once its record is on its backup.
# The simulator found creates held for as long as a backup stayed cut off
# while the configuration store could not record the smaller in-sync set
# (pmesh-sim seed 1535): silence. Now a held reply without an await's
# deadline is answered UNAVAILABLE ("may or may not have happened") after
# held_reply_timeout. Here the backup is frozen (SIGSTOP) and the reply's
# bound (200ms) is shorter than failure detection (the owner would drop the
# backup and answer after ~0.8 s): the create is answered at the bound, and
# the agent keeps serving: once the backup runs again, creates are
# acknowledged as before.
#
#   BUILD=build tests/integration/test_held_reply.sh
. "$(dirname "$0")/mesh_lib.sh"

mesh_up 2 --replicas 2 --unsafe-no-coordination --held-reply-timeout 200ms

# The owner n1 has its backup: a create is acknowledged.
_created() { pm 1 create && [ "$RC" = 0 ]; }
wait_for 20 _created || true
expect_eq "with its backup running, n1 acknowledges a create" 0 "$RC"

kill -STOP "${MESH_PID[2]}"
T0=$(now_ms)
pm 1 create
T1=$(now_ms)
kill -CONT "${MESH_PID[2]}"
expect_eq "backup frozen: the create is answered with an error" 1 "$([ "$RC" != 0 ] && echo 1)"
expect_match "... UNAVAILABLE, saying the change may or may not have happened" \
    "UNAVAILABLE.*may or may not have happened" "$ERR"
echo "# answered after $((T1 - T0)) ms (held_reply_timeout 200 ms)"
expect_lt "... within 5 s, not never ($((T1 - T0)) ms)" "$((T1 - T0))" 5000
expect_lt "... and not before the bound" 150 "$((T1 - T0))"
expect_lt "n1 counts it (status: clients.held_expired)" 0 "$(mstat 1 clients.held_expired)"

# The backup runs again: n1 serves as before.
wait_for 20 _created || true
expect_eq "backup running again: a create is acknowledged" 0 "$RC"

finish
