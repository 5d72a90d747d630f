#!/usr/bin/env bash
# test_sdk_node.sh - the Node SDK (sdk/js, @pmesh/client): its node --test
# suite against real pmeshd agents (one per test file or a mesh of three via
# scripts/mesh-up; the tests start them and stop them by PID, and write
# their PIDs to $CHILD_PIDS so this script's trap stops them too if node
# dies), the TypeScript declarations (tsc --noEmit), and the package as
# another project installs it (test/install.test.mjs).
. "$(dirname "$0")/lib.sh"

SDK=$(cd "$(dirname "$0")/../../sdk/js" && pwd)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "# skipped: no node/npm on this machine (scripts/deps installs them)"
    finish
fi
# As scripts/deps does it: npm ci when node_modules is absent or older than the lock.
if [ ! -f "$SDK/node_modules/.package-lock.json" ] ||
    [ "$SDK/package-lock.json" -nt "$SDK/node_modules/.package-lock.json" ]; then
    (cd "$SDK" && npm ci --no-audit --no-fund --loglevel=error) >"$TMP/npm.log" 2>&1 ||
        { cat "$TMP/npm.log"; not_ok "npm ci in sdk/js"; finish; }
fi
# npm ci copies the schema (the package's prepare step); a node_modules kept
# from before a change of proto/pmesh.proto would leave the old copy.
(cd "$SDK" && node scripts/copy-proto.cjs) || { not_ok "copy the schema into sdk/js"; finish; }

run bash -c "cd '$SDK' && npx --no-install tsc --noEmit -p tsconfig.json"
expect_eq "index.d.ts type-checks (tsc --noEmit)" 0 "$RC"
[ "$RC" = 0 ] || echo "$OUT" | head -20

# Each test file runs in its own node process, one at a time.
RC=0
(cd "$SDK" && BUILD=$(cd "$BUILD" && pwd) PMESH_CHILD_PIDS=$CHILD_PIDS TMPDIR=$TMP \
    timeout -k 5 600 node --test --test-concurrency=1 --test-reporter=tap test/) \
    >"$TMP/node-test.out" 2>&1 || RC=$?
grep -E '^(not )?ok |^# (Subtest|tests|pass|fail|skipped)' "$TMP/node-test.out" | grep -v '^# Subtest' | sed 's/^/  /'
if [ "$RC" = 0 ] && grep -q '^# fail 0' "$TMP/node-test.out" && ! grep -q '^# pass 0$' "$TMP/node-test.out"; then
    ok "node --test sdk/js/test ($(sed -n 's/^# pass //p' "$TMP/node-test.out") passed)"
else
    not_ok "node --test sdk/js/test (exit $RC)" "$(grep -B2 -A25 '^not ok' "$TMP/node-test.out" | head -80)"
fi
finish
