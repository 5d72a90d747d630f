#!/usr/bin/env bash
# test_hostdirs.sh - the permission model of the node-local socket, played
# with real users and capabilities (needs root; setpriv from util-linux):
#   - the kubelet makes the hostPath directories root:root 0755;
#   - the DaemonSet's init container (its script, run with exactly the
#     capabilities it adds) hands them to the agent's user and group;
#   - the agent, as that non-root user, creates its socket and WAL there;
#   - a function pod's process (another uid, the agent's group as a
#     supplemental group) connects; without the group it cannot;
#   - a restart (directories already the agent's) works too.
. "$(dirname "$0")/lib.sh"

if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null 2>&1; then
    ok "SKIP: needs root and setpriv to play other users (covered by policy.js otherwise)"
    finish
fi

render deploy/base "$TMP/base.yaml"
node -e '
const { readDocs } = require(process.argv[1] + "/k8s.js");
const fs = require("fs");
const ds = readDocs(fs.readFileSync(process.argv[2], "utf8"), "base").find((d) => d.kind === "DaemonSet");
const pod = ds.spec.template.spec;
const init = pod.initContainers[0];
const out = process.argv[3];
fs.writeFileSync(out + "/init.sh", init.command[init.command.length - 1]);
fs.writeFileSync(out + "/init.caps", (init.securityContext.capabilities.add || []).map((c) => "+" + c.toLowerCase()).join(","));
fs.writeFileSync(out + "/agent.ids", pod.securityContext.runAsUser + " " + pod.securityContext.runAsGroup + "\n");
' "$DEPLOY_TESTS" "$TMP/base.yaml" "$TMP"
read -r AUID AGID <"$TMP/agent.ids"
CAPS=$(cat "$TMP/init.caps")
expect_eq "the init container adds CHOWN only" "+chown" "$CAPS"

chmod 0711 "$TMP" # other users may pass through, as through / on a node
H=$TMP/host
mkdir -m 0755 "$H" "$H/run-pmesh" "$H/var-lib-pmesh" # as the kubelet creates them
sed -e "s|/run/pmesh|$H/run-pmesh|g" -e "s|/var/lib/pmesh|$H/var-lib-pmesh|g" "$TMP/init.sh" >"$TMP/init-local.sh"

# init: root, with the bounding set cut to the container's capabilities.
# (Command lines, not shell functions: `run` executes them under timeout.)
INIT=(setpriv --reuid 0 --regid 0 --clear-groups --inh-caps=-all)
run "${INIT[@]}" --bounding-set=-all -- sh -e "$TMP/init-local.sh"
expect_eq "without capabilities the init script fails (the test can fail)" 1 "$RC"
expect_match "... on chown" "chown.*Operation not permitted" "$ERR"
run "${INIT[@]}" --bounding-set="-all,$CAPS" -- sh -e "$TMP/init-local.sh"
expect_eq "the init script succeeds with CHOWN alone" 0 "$RC"
expect_eq "/run/pmesh becomes $AUID:$AGID 2770" "$AUID:$AGID 2770" "$(stat -c '%u:%g %a' "$H/run-pmesh")"
expect_eq "/var/lib/pmesh becomes $AUID:$AGID 700" "$AUID:$AGID 700" "$(stat -c '%u:%g %a' "$H/var-lib-pmesh")"

SOCK=$H/run-pmesh/agent.sock
start_host_agent() {
    bg agent setpriv --reuid "$AUID" --regid "$AGID" --clear-groups --inh-caps=-all \
        -- "$PMESHD" --node hostdirs --socket "$SOCK" --data-dir "$H/var-lib-pmesh"
    AGENT=$BG_PID
    wait_for 10 test -S "$SOCK"
}
start_host_agent
check "the agent, as $AUID:$AGID, serves its socket in /run/pmesh" test -S "$SOCK"
expect_eq "the socket is $AUID:$AGID 660" "$AUID:$AGID 660" "$(stat -c '%u:%g %a' "$SOCK")"

# A function pod's process: uid 20001, with or without the agent's group.
FN=(setpriv --reuid 20001 --regid 20001 --groups "$AGID" --inh-caps=-all -- "$PMESH" --socket "$SOCK")
FN_NOGROUP=(setpriv --reuid 20001 --regid 20001 --clear-groups --inh-caps=-all -- "$PMESH" --socket "$SOCK")
run "${FN[@]}" create
expect_eq "a function (uid 20001, supplementalGroups [$AGID]) creates a promise" 0 "$RC"
P=$OUT
run "${FN_NOGROUP[@]}" get "$P"
expect_eq "without the group it cannot reach the agent (69)" 69 "$RC"

kill -TERM "$AGENT"
wait_exit "$AGENT" 5
expect_eq "the agent stops on SIGTERM" 0 "$RC"
run "${INIT[@]}" --bounding-set="-all,$CAPS" -- sh -e "$TMP/init-local.sh"
expect_eq "a restart: the init script succeeds on directories already handed over" 0 "$RC"
expect_eq "... and leaves them as they were" "$AUID:$AGID 2770 $AUID:$AGID 700" \
    "$(stat -c '%u:%g %a' "$H/run-pmesh") $(stat -c '%u:%g %a' "$H/var-lib-pmesh")"
start_host_agent
run "${FN[@]}" get "$P"
expect_eq "... and the restarted agent has the promise from its WAL" pending "$(json_get "$OUT" state)"

finish
