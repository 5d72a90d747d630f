#!/bin/sh
# chain.sh - a function's use of pmesh through the CLI: create a promise,
# chain two continuations onto it while it is still pending, settle it, and
# await the end of the chain. The continuations run wherever a worker serves
# them (here: the `workers` container of any pod of this Deployment, on any
# node); this script hears nothing until the end of the chain is settled.
# The agent is the node's: PMESH_SOCKET=/run/pmesh/agent.sock (hostPath).
set -eu
p=$(pmesh create --timeout 5m)
p1=$(pmesh then "$p" uppercase --timeout 1m)
p2=$(pmesh then "$p1" exclaim --timeout 1m)
pmesh resolve "$p" "hello from ${HOSTNAME:-a function}"
# Prints the value; exits 1 if any link was rejected, 2 on --timeout.
pmesh await "$p2" --timeout 60s
echo
