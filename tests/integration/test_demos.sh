#!/usr/bin/env bash
# The README's demos keep working: `make demo` (a chain across a 3-agent
# mesh) and scripts/demo-external (a human task settled by webhook).
. "$(dirname "$0")/lib.sh"

# What a script printed, when it failed.
_why() { [ "$RC" = 0 ] || printf "%s\n%s\n" "$OUT" "$ERR" | tail -40 | sed "s/^/#   /"; }

run env BUILD="$BUILD" DEMO_PORT_BASE="$(free_ports 4)" scripts/demo
expect_eq "scripts/demo exits 0" 0 "$RC"
_why
expect_match "... the chain's end is awaited" "awaited +HELLO FROM THE OUTSIDE WORLD!" "$OUT"
expect_match "... uppercase ran on a2, exclaim on a3" "on a2's worker.*on a3's worker" "$(tr '\n' ' ' <<<"$OUT")"
expect_match "... members lists all three agents" "a1 .*a2 .*a3 |a1 .*a3 .*a2 |a2 .*a1 |a3 .*a1 " "$(tr '\n' ' ' <<<"$OUT")"

run env BUILD="$BUILD" DEMO_PORT_BASE="$(free_ports 8)" scripts/demo-external
expect_eq "scripts/demo-external exits 0" 0 "$RC"
_why
expect_match "... the chain ends with both continuations applied" \
    'r resolved: "notified the requester: summary\(a human says: is this photo a cat\? -> yes\)"' "$OUT"
expect_match "... the marketplace settled through the webhook" "called back .* -> HTTP 200" "$OUT"
expect_match "... a settle without the token is refused" "without Authorization -> HTTP 401" "$OUT"
expect_match "... another promise's token too" "with p's token -> HTTP 403" "$OUT"
expect_match "... and the public listener lists nothing" "[(]listing[)] -> HTTP 404" "$OUT"

finish
