#!/usr/bin/env bash
# Mesh security: with --mesh-key-dir every channel is CURVE and only holders
# of the mesh key can join; a peer without the key (plain ZeroMQ) or with
# another key is refused at the handshake, logged and counted; a mesh with
# neither keys nor --insecure is refused at start (exit 78).
. "$(dirname "$0")/lib.sh"

PORT=$(free_ports 6)
"$PMESHD" --keygen "$TMP/keys" >/dev/null
"$PMESHD" --keygen "$TMP/other" >/dev/null
expect_eq "--keygen writes a 0600 secret key" 600 "$(stat -c %a "$TMP/keys/mesh.key")"
run "$PMESHD" --keygen "$TMP/keys"
expect_eq "--keygen never overwrites a key" 1 "$RC"

run "$PMESHD" --socket "$TMP/x.sock" --bind "tcp://127.0.0.1:$PORT"
expect_eq "a mesh with neither keys nor --insecure is refused (exit 78)" 78 "$RC"
expect_match "... saying what to do" "mesh-key-dir.*insecure" "$ERR"
mkdir "$TMP/bad"
echo garbage >"$TMP/bad/mesh.key"
cp "$TMP/keys/mesh.pub" "$TMP/bad/"
run "$PMESHD" --socket "$TMP/x.sock" --bind "tcp://127.0.0.1:$PORT" --mesh-key-dir "$TMP/bad"
expect_eq "a malformed key is refused at start (exit 78)" 78 "$RC"

start_agent 1 --bind "tcp://127.0.0.1:$PORT" --mesh-key-dir "$TMP/keys"
S1=$AGENT_SOCK
start_agent 2 --bind "tcp://127.0.0.1:$((PORT + 1))" --seed "tcp://127.0.0.1:$PORT" \
    --mesh-key-dir "$TMP/keys"
S2=$AGENT_SOCK
alive2() { "$PMESH" --socket "$1" status | grep -q '"alive":2'; }
wait_for 10 alive2 "$S1" && ok "two agents with the mesh key form a mesh" ||
    not_ok "two agents with the mesh key form a mesh"
p=$("$PMESH" --socket "$S1" create)
run "$PMESH" --socket "$S2" resolve "$p" "over CURVE"
run "$PMESH" --socket "$S1" get "$p"
expect_eq "... and operations cross it" "resolved" "$(json_get "$OUT" state)"

# A keyless peer: an agent started --insecure that seeds itself to agent 1.
start_agent 3 --insecure --bind "tcp://127.0.0.1:$((PORT + 2))" --seed "tcp://127.0.0.1:$PORT"
S3=$AGENT_SOCK
# An agent with another mesh's key.
start_agent 4 --bind "tcp://127.0.0.1:$((PORT + 3))" --seed "tcp://127.0.0.1:$PORT" \
    --mesh-key-dir "$TMP/other"
S4=$AGENT_SOCK
# "Never joins" is checked once each outsider has tried to join several
# times (its sync requests to the seed) and agent 1 has refused handshakes.
need "the keyless agent tried to join 3 times" 15 \
    stat_at_least "$S3" "mesh.sent.swim_sync-req.messages" 3
need "the agent with another key tried to join 3 times" 15 \
    stat_at_least "$S4" "mesh.sent.swim_sync-req.messages" 3
refused_some() {
    [ $(($(agent_stat "$S1" mesh.handshakes_failed) + $(agent_stat "$S1" mesh.auth_refused))) -ge 2 ]
}
need "agent 1 refused their handshakes" 15 refused_some
expect_eq "the keyless agent never joins (agent 1 sees 2 alive)" 2 \
    "$(json_get "$("$PMESH" --socket "$S1" status)" mesh.members.alive)"
expect_eq "... and sees nobody itself" 1 "$(json_get "$("$PMESH" --socket "$S3" status)" mesh.members.alive)"
expect_eq "the agent with another key never joins either" 1 \
    "$(json_get "$("$PMESH" --socket "$S4" status)" mesh.members.alive)"
FAILED_HS=$(json_get "$("$PMESH" --socket "$S1" status)" mesh.handshakes_failed)
REFUSED=$(json_get "$("$PMESH" --socket "$S1" status)" mesh.auth_refused)
expect_lt "agent 1 counted refused handshakes ($FAILED_HS failed, $REFUSED refused)" 0 \
    $((FAILED_HS + REFUSED))
expect_match "... and logged them" "PM-MESH-(HANDSHAKE-FAILED|AUTH-REFUSED)" "$(cat "$TMP/agent-1.log")"
expect_match "the insecure agent warned about it" "PM-MESH-INSECURE" "$(cat "$TMP/agent-3.log")"
run "$PMESH" --socket "$S3" get "$p"
expect_eq "the outsider cannot reach the mesh's promises" 1 "$RC"

finish
