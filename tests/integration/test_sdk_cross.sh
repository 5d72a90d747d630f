#!/usr/bin/env bash
# test_sdk_cross.sh - one chain across every language (issue 12): a Python
# function creates a promise and chains on functions served by a Node worker
# (shout: upper case) and a C worker (bang: appends "!"), then settles it; a
# Node client awaits the end of the chain. The agent is then SIGKILLed and
# restarted on its data dir: without touching the workers, a chain created
# before the kill (its source settled after the restart) and one created
# after both complete.
. "$(dirname "$0")/lib.sh"

SRC_DIR=$(cd "$(dirname "$0")/../.." && pwd)
SDK_JS=$SRC_DIR/sdk/js
PY=/usr/bin/python3
if ! command -v node >/dev/null 2>&1 || [ ! -d "$SDK_JS/node_modules" ] || ! [ -x "$PY" ]; then
    skip "a chain across Python, Node and C" "needs node, sdk/js/node_modules and /usr/bin/python3 (make deps)"
    finish
fi
VENV=$TMP/venv
if ! "$PY" -m venv --system-site-packages "$VENV" >"$TMP/venv.log" 2>&1 ||
    ! (cd "$SRC_DIR" && timeout 120 "$VENV/bin/pip" install --no-deps --no-build-isolation ./sdk/python) \
        >"$TMP/pip.log" 2>&1; then
    not_ok "the Python SDK installs into a venv" "$(tail -5 "$TMP/pip.log" 2>/dev/null)"
    finish
fi

start_agent 1 --data-dir "$TMP/data"
S=$AGENT_SOCK
APID=$AGENT_PID

# The Node worker (shout) and the C worker (bang), left alone from here on.
cat >"$TMP/shout.mjs" <<JS
import {Worker} from '$SDK_JS/index.mjs';
const w = new Worker({socket: process.env.S, concurrency: 4});
w.function('shout', async (input) => Buffer.from(input.toString().toUpperCase()));
await w.run();
JS
S="$S" bg node-worker node "$TMP/shout.mjs"
NODE_WORKER=$BG_PID
S="$S" bg c-worker "$BIN/pmesh_chain" worker --socket "$S" --function bang --concurrency 4 --append '!'
C_WORKER=$BG_PID
served() { # FUNCTION
    "$PMESH" --socket "$S" status 2>/dev/null | "$PY" -c \
        'import json,sys; f=json.load(sys.stdin).get("functions",{}); sys.exit(0 if f.get(sys.argv[1],{}).get("workers") else 1)' "$1"
}
wait_for 20 served shout && ok "the Node worker registered shout" || not_ok "the Node worker registered shout" "$(tail -5 "$TMP/node-worker.log")"
wait_for 20 served bang && ok "the C worker registered bang" || not_ok "the C worker registered bang" "$(tail -5 "$TMP/c-worker.log")"

# The Python function: create, chain twice, and (unless told to wait) settle.
cat >"$TMP/fn.py" <<'PY'
import sys, pmesh
c = pmesh.Client(sys.argv[1])
p = c.create(timeout="2m")
q = c.then(p, "shout")
r = c.then(q, "bang")
if sys.argv[2] != "-":
    c.resolve(p, sys.argv[2])
print(p)
print(r)
PY
# The Node client: awaits a promise and prints its value.
cat >"$TMP/await.mjs" <<JS
import {Client} from '$SDK_JS/index.mjs';
const c = new Client({socket: process.argv[2]});
try {
  process.stdout.write(await c.wait(process.argv[3], {timeout: '30s'}));
} finally {
  await c.close();
}
JS
run "$VENV/bin/python" "$TMP/fn.py" "$S" "hello from python"
expect_eq "the Python function creates and chains" 0 "$RC"
R=$(sed -n 2p <<<"$OUT")
run node "$TMP/await.mjs" "$S" "$R"
expect_eq "the Node client awaits the end of the chain" 0 "$RC"
expect_eq "... Python -> Node (shout) -> C (bang)" "HELLO FROM PYTHON!" "$OUT"

# A chain created before the agent dies, settled after its restart.
run "$VENV/bin/python" "$TMP/fn.py" "$S" -
P1=$(sed -n 1p <<<"$OUT")
R1=$(sed -n 2p <<<"$OUT")
expect_match "a chain created before the kill" '.' "$R1"
kill -KILL "$APID"
wait_exit "$APID" 10
start_agent 1 --data-dir "$TMP/data"
APID=$AGENT_PID
run "$PMESH" --socket "$S" resolve "$P1" "before the kill"
expect_eq "its source settled after the restart" 0 "$RC"
run node "$TMP/await.mjs" "$S" "$R1"
expect_eq "... completes through the same workers (they reconnected)" "BEFORE THE KILL!" "$OUT"
run "$VENV/bin/python" "$TMP/fn.py" "$S" "after the restart"
R2=$(sed -n 2p <<<"$OUT")
run node "$TMP/await.mjs" "$S" "$R2"
expect_eq "a chain created after the restart completes" "AFTER THE RESTART!" "$OUT"
alive "$NODE_WORKER" && alive "$C_WORKER" && ok "... and the workers are the same processes as before the kill" ||
    not_ok "... and the workers are the same processes as before the kill"
finish
