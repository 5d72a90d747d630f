#!/usr/bin/env bash
# test_rehearsal.sh - the DaemonSet rehearsed on this machine: three agents
# started the way the pods start (scripts/mesh-up --config with the
# pmesh.yaml of the rendered base ConfigMap, keys and token from
# scripts/gen-secrets as the Secret would give them, NODE_NAME and POD_IP in
# the environment). They form one mesh; a promise created on one agent
# resolves from another; the HTTP gateway answers probes and webhooks as
# the Services expect; the examples (CLI script and worker from the
# function Deployment's ConfigMap, the libpmesh program) run against it; a
# SIGTERM is a graceful leave. Every process is stopped by PID.
. "$(dirname "$0")/lib.sh"

# The base, rendered; its agent config and args extracted.
render deploy/base "$TMP/base.yaml" || {
    not_ok "deploy/base renders" "$(cat "$TMP/base.yaml.err")"
    finish
}
run node "$DEPLOY_TESTS/policy.js" --extract "$TMP/agent" "$TMP/base.yaml"
check "the base ConfigMap's pmesh.yaml is extracted" test -s "$TMP/agent/pmesh.yaml"

# The Secret, as the pods would mount it.
MESH=$TMP/mesh
mkdir -p "$MESH/keys"
PMESHD=$PMESHD "$SRC_DIR/scripts/gen-secrets" >"$TMP/secret.yaml"
decode() { sed -n "s/^  $1: //p" "$TMP/secret.yaml" | base64 -d >"$2"; }
decode mesh.pub "$MESH/keys/mesh.pub"
decode mesh.key "$MESH/keys/mesh.key"
decode token-secret "$MESH/token"

# Start. A busy port is retried elsewhere (other suites run meshes too).
for _ in 1 2 3; do
    PORT=$(free_ports 1)
    HPORT=$(free_ports 1)
    rm -f "$MESH/pids"
    if BUILD=$BUILD "$SRC_DIR/scripts/mesh-up" 3 --config "$TMP/agent/pmesh.yaml" --dir "$MESH" \
        --port "$PORT" --http-port "$HPORT" >"$TMP/mesh-up.out" 2>"$TMP/mesh-up.err"; then
        up=1
        break
    fi
    up=0
    grep -q "Address already in use" "$TMP/mesh-up.err" || break
done
while read -r _ pid; do PIDS+=("$pid"); done <"$MESH/pids" 2>/dev/null || true
expect_eq "mesh-up --config starts 3 agents as the DaemonSet would" 1 "$up"
[ "$up" = 1 ] || {
    cat "$TMP/mesh-up.err"
    finish
}
. "$MESH/env"
for k in 1 2 3; do cp "$MESH/n$k.log" "$TMP/n$k.log" 2>/dev/null || true; done

cmd=$(cat "$MESH/n2.cmd")
expect_match "agent started with NODE_NAME, POD_IP and the ConfigMap's file" \
    "^env NODE_NAME=n2 POD_IP=127\.0\.0\.2 .*pmeshd --config $MESH/pmesh.yaml --advertise tcp://127\.0\.0\.2:$PORT " "$cmd"
expect_match "... with the Secret's keys and token" "--mesh-key-dir $MESH/keys --token-secret-file $MESH/token" "$cmd"
expect_eq "... and the file is the ConfigMap's, unchanged" "$(md5sum <"$TMP/agent/pmesh.yaml")" "$(md5sum <"$MESH/pmesh.yaml")"

sock() { eval "echo \$N$1_SOCKET"; }
http() { eval "echo \$N$1_HTTP"; }
for k in 1 2 3; do
    st=$("$PMESH" --socket "$(sock $k)" status)
    expect_eq "n$k sees 3 alive" 3 "$(json_get "$st" mesh.members.alive)"
    expect_eq "n$k's node name is NODE_NAME" "n$k" "$(json_get "$st" node)"
done
# Keys given and no PM-MESH-INSECURE warning: CURVE (test_curve.sh shows a
# keyless or wrong-key peer is refused).
expect_eq "the mesh runs CURVE (no PM-MESH-INSECURE)" 0 "$(cat "$MESH"/n*.log | grep -c PM-MESH-INSECURE || true)"

# A promise across the mesh: created on n1, awaited on n3, resolved from n2.
run "$PMESH" --socket "$(sock 1)" create --timeout 1m
P=$OUT
expect_match "create on n1" '^n1-' "$P"
bg await3 "$PMESH" --socket "$(sock 3)" await "$P" --timeout 20s
AWAIT_PID=$BG_PID
run "$PMESH" --socket "$(sock 2)" resolve "$P" "from n2"
expect_eq "resolve from n2" 0 "$RC"
wait_exit "$AWAIT_PID" 20
expect_eq "n3's await returns" 0 "$RC"
expect_eq "... with n2's value" "from n2" "$(cat "$TMP/await3.out")"

# The gateway as the probes, Prometheus and outside systems see it.
for k in 1 2 3; do
    run curl -s -o /dev/null -w '%{http_code}' "$(http $k)/readyz"
    expect_eq "GET /readyz on n$k: 200 (joined)" 200 "$OUT"
done
run curl -s "$(http 2)/metrics"
expect_match "GET /metrics: Prometheus text" $'\npmesh_up 1' "$OUT"
http_public() { eval "echo \$N$1_HTTP_PUBLIC"; }
run curl -s -o /dev/null -w '%{http_code}' -X POST -d '{"timeout":"1m"}' "$(http 2)/v1/promises"
expect_eq "POST /v1/promises without an API key: 401" 401 "$OUT"
run curl -s -X POST -H "Authorization: Bearer $PMESH_MESH_API_KEY" -H 'Content-Type: application/json' \
    -d '{"timeout":"1m"}' "$(http 2)/v1/promises"
W=$(json_get "$OUT" id)
TOKEN=$(json_get "$OUT" settle_token)
expect_match "POST /v1/promises with the Secret's API key: a settle token (token_secret_file from the Secret)" \
    '^[A-Za-z0-9_-]{20,}$' "$TOKEN"
expect_match "... and callback_url under http_public_url (the pmesh-http-public Service)" \
    "^http://pmesh-http-public\.pmesh\.svc\.cluster\.local:8081/v1/promises/" "$(json_get "$OUT" callback_url)"
run curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $PMESH_MESH_API_KEY" \
    -d '{}' "$(http_public 3)/v1/promises"
expect_eq "the public listener refuses client routes" 404 "$OUT"
run curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
    -d '{"value":"by webhook"}' "$(http_public 3)/v1/promises/$W/resolve"
expect_eq "the outside system resolves it through another agent's public listener" 200 "$OUT"
run "$PMESH" --socket "$(sock 1)" await "$W" --timeout 10s
expect_eq "... and n1 sees the value" "by webhook" "$OUT"

# The function example: its scripts as the ConfigMap holds them, its
# worker command as the Deployment runs it (here on n3), the client on n1.
render deploy/examples/function-deployment "$TMP/example.yaml"
node -e '
const { readDocs } = require(process.argv[1] + "/k8s.js");
const fs = require("fs");
const docs = readDocs(fs.readFileSync(process.argv[2], "utf8"), "example");
const cm = docs.find((d) => d.kind === "ConfigMap");
for (const [k, v] of Object.entries(cm.data)) fs.writeFileSync(process.argv[3] + "/" + k, v);
const dep = docs.find((d) => d.kind === "Deployment");
const c = dep.spec.template.spec.containers.find((x) => x.name === "workers");
fs.writeFileSync(process.argv[3] + "/worker.cmd", c.command.join("\n") + "\n");
' "$DEPLOY_TESTS" "$TMP/example.yaml" "$TMP" || not_ok "the example's ConfigMap and Deployment are read"
mapfile -t wcmd < <(sed -e "s|^/scripts/|$TMP/|" -e "s|^pmesh$|$PMESH|" "$TMP/worker.cmd")
PMESH_SOCKET=$(sock 3) bg worker "${wcmd[@]}"
wait_for 10 grep -q "PM-WORKER-REGISTERED.*exclaim" "$MESH/n3.log" || true
mkdir -p "$TMP/bin"
ln -sf "$PMESH" "$TMP/bin/pmesh"
run env PATH="$TMP/bin:$PATH" PMESH_SOCKET="$(sock 1)" HOSTNAME=rehearsal sh "$TMP/chain.sh"
expect_eq "example chain.sh on n1 (workers on n3) exits 0" 0 "$RC"
expect_eq "... and prints the end of the chain" "HELLO FROM REHEARSAL!" "$OUT"

B=$(cd "$BUILD" && pwd)
# shellcheck disable=SC2046
cc -std=gnu11 -O1 ${SANITIZE:+-fsanitize=$SANITIZE} -I"$SRC_DIR/node" -o "$TMP/chain" "$SRC_DIR/deploy/examples/libpmesh/chain.c" \
    "$B/lib/libpmesh.a" $(pkg-config --libs libzmq libprotobuf-c) -lpthread
run env PMESH_SOCKET="$(sock 2)" "$TMP/chain" "libpmesh on n2"
expect_eq "example chain.c on n2 exits 0" 0 "$RC"
expect_match "... with the chained value" ": LIBPMESH ON N2!$" "$OUT"

# SIGTERM, as the kubelet sends it: n3 leaves, the others know at once.
kill -TERM "$N3_PID"
t0=$(now_ms)
wait_for 5 sh -c "! kill -0 $N3_PID 2>/dev/null" || true
expect_eq "n3 stops within a second or two of SIGTERM" gone "$(kill -0 "$N3_PID" 2>/dev/null && echo running || echo gone)"
expect_match "... after a graceful stop (PM-AGENT-STOPPED)" PM-AGENT-STOPPED "$(cat "$MESH/n3.log")"
left=no
while [ $(($(now_ms) - t0)) -lt 3000 ]; do
    m=$("$PMESH" --socket "$(sock 1)" members --json 2>/dev/null || true)
    if python3 -c 'import json,sys; m=json.loads(sys.argv[1]); sys.exit(0 if any(x.get("node")=="n3" and x.get("state")=="left" for x in m) else 1)' "$m" 2>/dev/null; then
        left=yes
        break
    fi
    sleep 0.05
done
expect_eq "n1 marks n3 left within a second or so (graceful leave)" yes "$left"
[ "$left" = yes ] && ok "... in $(($(now_ms) - t0)) ms"

for k in 1 2 3; do cp "$MESH/n$k.log" "$TMP/n$k.log" 2>/dev/null || true; done
"$SRC_DIR/scripts/mesh-down" "$MESH"
check "mesh-down stopped every agent it started" test ! -e "$MESH"
finish
