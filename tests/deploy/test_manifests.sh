#!/usr/bin/env bash
# test_manifests.sh - every kustomization renders, every object it renders
# passes the Kubernetes schemas (validate.js) and pmesh's deployment rules
# (policy.js), and the agent's pmesh.yaml of each passes `pmeshd --check`
# with the container's own args. The mesh's etcd (deploy/etcd) renders alone
# and in prod, not in dev; the agents' coordination block agrees with it.
# Broken fixtures are refused, each for its reason.
. "$(dirname "$0")/lib.sh"

# kustomization  CURVE-required?
KUSTOMIZATIONS=(
    "deploy/base curve"
    "deploy/overlays/dev -"
    "deploy/overlays/prod curve"
    "deploy/etcd -"
    "deploy/examples/fission curve"
    "deploy/examples/function-deployment -"
    "deploy/examples/fission-python -"
)
KEYS=$TMP/keys
"$PMESHD" --keygen "$KEYS" >/dev/null
# etcd's client TLS files, as the agents get them from pmesh-etcd-tls.
ETCD_TLS=$TMP/etcd-tls
mkdir -p "$ETCD_TLS"
PMESHD=$PMESHD "$SRC_DIR/scripts/gen-secrets" >"$TMP/secrets.yaml"
for k in ca.crt client.crt client.key; do
    sed -n "s/^  $k: //p" "$TMP/secrets.yaml" | base64 -d >"$ETCD_TLS/$k"
done

# Render all, then check the schemas of everything in one run of node.
RENDERED=()
for entry in "${KUSTOMIZATIONS[@]}"; do
    read -r dir curve <<<"$entry"
    out=$TMP/${dir//\//_}.yaml
    if render "$dir" "$out"; then
        ok "$dir renders ($(grep -c '^kind:' "$out") objects)"
        RENDERED+=("$out")
    else
        not_ok "$dir renders" "$(cat "$out.err")"
    fi
done
POLICY_FIXTURES=("$DEPLOY_TESTS"/fixtures/policy-*.yaml)
node "$DEPLOY_TESTS/validate.js" "${RENDERED[@]}" "${POLICY_FIXTURES[@]}" >"$TMP/validate.out" 2>&1 || true
for entry in "${KUSTOMIZATIONS[@]}"; do
    read -r dir curve <<<"$entry"
    out=$TMP/${dir//\//_}.yaml
    [ -f "$out" ] || continue
    if grep -q "^ok - $out: " "$TMP/validate.out" && ! grep -q "^not ok - $out: " "$TMP/validate.out"; then
        ok "$dir: every object passes the Kubernetes schemas"
    else
        not_ok "$dir: every object passes the Kubernetes schemas" \
            "$(grep -A8 "^not ok - $out: " "$TMP/validate.out" | head -30)"
    fi
done
for f in "${POLICY_FIXTURES[@]}"; do
    if grep -q "^not ok - $f" "$TMP/validate.out"; then
        not_ok "$(basename "$f") is schema-valid (the rules catch it, not the schemas)" \
            "$(grep -A5 "^not ok - $f" "$TMP/validate.out")"
    else
        ok "$(basename "$f") is schema-valid (the rules catch it, not the schemas)"
    fi
done

for entry in "${KUSTOMIZATIONS[@]}"; do
    read -r dir curve <<<"$entry"
    name=${dir//\//_}
    out=$TMP/$name.yaml
    [ -f "$out" ] || continue
    flags=(--extract "$TMP/$name.agent")
    [ "$curve" = curve ] && flags+=(--require-curve)
    run node "$DEPLOY_TESTS/policy.js" "${flags[@]}" "$out"
    has_agent=1
    grep -q "no DaemonSet pmesh-agent" "$TMP/run.out" && has_agent=0
    if [ "$has_agent" = 0 ]; then
        # No agent here (an example of functions): the rules apply alone.
        run node "$DEPLOY_TESTS/policy.js" "$out"
    fi
    expect_eq "$dir: every object keeps the deployment rules" 0 "$RC"
    [ "$RC" = 0 ] || grep -v '^ok' "$TMP/run.out" | sed 's/^/#   /' | head -20
    [ "$has_agent" = 1 ] || continue

    # The agent exactly as the DaemonSet starts it: the ConfigMap's file,
    # the container's args ($(POD_IP) expanded), NODE_NAME from the downward
    # API. The Secret's mesh keys are not here: --mesh-key-dir points at a
    # keypair made for the test when the file asks for CURVE, and the
    # coordination TLS flags at files from gen-secrets when it names them.
    agent=$TMP/$name.agent
    mapfile -t args <"$agent/args"
    [ -f "$agent/curve" ] && args+=(--mesh-key-dir "$KEYS")
    grep -q '^coordination_ca_file:' "$agent/pmesh.yaml" &&
        args+=(--coordination-ca-file "$ETCD_TLS/ca.crt" --coordination-cert-file "$ETCD_TLS/client.crt"
            --coordination-key-file "$ETCD_TLS/client.key")
    run env NODE_NAME=node-a "$PMESHD" "${args[@]}" --check
    expect_eq "$dir: pmeshd --check accepts the ConfigMap's pmesh.yaml" 0 "$RC"
    [ "$RC" = 0 ] || echo "#   $ERR"
    cp "$TMP/run.out" "$agent/effective"
    expect_match "$dir: the agent advertises its pod IP" $'\nadvertise: "tcp://10.1.2.3:7480"' "$OUT"
    expect_match "$dir: node name from NODE_NAME" $'\n# node: node-a,' "$OUT"
done

# Overlay specifics, read from the effective configs.
eff() { grep -x "$2: .*" "$TMP/deploy_$1.agent/effective" | sed "s/^$2: //"; }
expect_eq "dev: insecure mesh" true "$(eff overlays_dev insecure)"
expect_eq "dev: one copy per promise (single node)" 1 "$(eff overlays_dev replicas)"
expect_eq "prod: CURVE keys (the Secret's mount)" /etc/pmesh/mesh-keys \
    "$(cat "$TMP/deploy_overlays_prod.agent/curve" 2>/dev/null)"
expect_eq "prod: not insecure" false "$(eff overlays_prod insecure)"
expect_eq "prod: smaller values" 262144 "$(eff overlays_prod max_value_bytes)"
expect_eq "prod: bounded HTTP connections" 512 "$(eff overlays_prod http_max_connections)"
expect_eq "base: WAL on the hostPath" '"/var/lib/pmesh"' "$(eff base data_dir)"
expect_eq "base: settle tokens" '"/etc/pmesh/token/secret"' "$(eff base token_secret_file)"
expect_eq "base: API keys from the Secret" '"/etc/pmesh/http/api-keys"' "$(eff base http_api_keys_file)"
expect_eq "prod: API keys from the Secret" '"/etc/pmesh/http/api-keys"' "$(eff overlays_prod http_api_keys_file)"
expect_eq "prod: the public listener" '"0.0.0.0:8081"' "$(eff overlays_prod http_public)"
expect_eq "prod: callbacks to the public Service" '"http://pmesh-http-public.pmesh.svc.cluster.local:8081"' \
    "$(eff overlays_prod http_public_url)"
expect_eq "dev: no keys, knowingly" true "$(eff overlays_dev insecure_http)"
# The Fission example is prod plus an HTTP function, nothing else.
fission_diff=$(diff <(grep -v '^#' "$TMP/deploy_overlays_prod.agent/effective") \
    <(grep -v '^#' "$TMP/deploy_examples_fission.agent/effective") || true)
expect_eq "fission example: prod's config plus http_functions only" \
    '< http_functions: []
---
> http_functions:
>   - "resize=http://router.fission/fission-function/resize timeout=10s retries=3"' \
    "$(printf '%s\n' "$fission_diff" | sed '1d')"

# ---- etcd for the mesh -----------------------------------------------------------------
# prod runs it (its rules are policy.js's, checked above), dev does not.
objs() { awk '/^kind:/ { k = $2 } /^metadata:/ { m = 1; next } /^[^ ]/ { m = 0 } m && /^  name:/ { print k "/" $2 }' "$TMP/deploy_$1.yaml" | sort; }
etcd_objs='NetworkPolicy/pmesh-etcd
PodDisruptionBudget/pmesh-etcd
Service/pmesh-etcd
Service/pmesh-etcd-peers
ServiceAccount/pmesh-etcd
StatefulSet/pmesh-etcd'
expect_eq "deploy/etcd: the StatefulSet, its Services, PDB, NetworkPolicy, ServiceAccount" "$etcd_objs" "$(objs etcd)"
expect_eq "prod runs deploy/etcd" "$etcd_objs" "$(objs overlays_prod | grep etcd)"
expect_eq "dev runs no etcd and mounts no etcd Secret (single node)" 0 "$(grep -c 'etcd' "$TMP/deploy_overlays_dev.yaml")"
expect_match "prod: 3 members" $'\n  replicas: 3\n' "$(cat "$TMP/deploy_etcd.yaml")"

# The agents' coordination block in pmesh.yaml: live once pmeshd knows the
# keys, commented (TODO) until then; the same in base, prod and the Fission
# example (prod plus http_functions).
want_block='coordination: etcd://pmesh-etcd.pmesh.svc.cluster.local:2379
coordination_prefix: /pmesh/prod
coordination_ca_file: /etc/pmesh/etcd/ca.crt
coordination_cert_file: /etc/pmesh/etcd/client.crt
coordination_key_file: /etc/pmesh/etcd/client.key'
knows=0
# (grep reads it all: with -q it would stop early and pipefail would count
# pmeshd's SIGPIPE as "not found")
"$PMESHD" --help 2>&1 | grep -- '--coordination' >/dev/null && knows=1
for f in deploy/base/pmesh.yaml deploy/overlays/prod/pmesh.yaml deploy/examples/fission/pmesh.yaml; do
    expect_eq "$f: the coordination block (etcd Service, prefix, the Secret's files)" "$want_block" \
        "$(sed -n 's/^#\{0,1\}\(coordination[a-z_]*: .*\)$/\1/p' "$f")"
    live=$(grep -c '^coordination' "$f" || true)
    if [ "$knows" = 0 ]; then
        expect_eq "$f: the block is commented while pmeshd does not know --coordination" 0 "$live"
    elif [ "$live" = 0 ]; then
        echo "# NOTE: pmeshd now knows --coordination: uncomment the coordination block in $f"
    fi
done
# Uncommented, it keeps the rules (Service, port, Secret files); without its
# key file it breaks them.
sed 's/^    #coordination/    coordination/' "$TMP/deploy_overlays_prod.yaml" >"$TMP/prod-coord.yaml"
run node "$DEPLOY_TESTS/policy.js" --require-curve "$TMP/prod-coord.yaml"
expect_eq "prod with the coordination block live keeps the rules" 0 "$RC"
[ "$RC" = 0 ] || grep -v '^ok' "$TMP/run.out" | sed 's/^/#   /' | head -20
expect_eq "... the block is there to check" 5 "$(grep -c '^    coordination' "$TMP/prod-coord.yaml")"
sed '/^    #*coordination_key_file/d' "$TMP/prod-coord.yaml" >"$TMP/prod-coord-bad.yaml"
run node "$DEPLOY_TESTS/policy.js" --require-curve "$TMP/prod-coord-bad.yaml"
expect_eq "... without coordination_key_file it breaks them" 1 "$RC"
expect_match "... saying so" "pmesh.yaml sets coordination but no coordination_key_file" "$OUT"
if [ "$knows" = 1 ]; then
    # pmeshd --check of the live block, the Secret's files from gen-secrets.
    sed -e 's/^#coordination/coordination/' -e "s|/etc/pmesh/etcd/|$ETCD_TLS/|" \
        "$TMP/deploy_overlays_prod.agent/pmesh.yaml" >"$TMP/coord-pmesh.yaml"
    run env NODE_NAME=node-a "$PMESHD" --config "$TMP/coord-pmesh.yaml" --mesh-key-dir "$KEYS" --check
    expect_eq "pmeshd --check accepts prod's pmesh.yaml with the coordination block live" 0 "$RC"
    [ "$RC" = 0 ] || echo "#   $ERR"
else
    echo "# SKIP: pmeshd --check of the coordination block: this pmeshd has no --coordination yet"
fi

# The agent's config check can fail: a misspelt key in the extracted file.
bad=$TMP/bad-pmesh.yaml
sed 's/^replicas: 2$/replica: 2/' "$TMP/deploy_overlays_prod.agent/pmesh.yaml" >"$bad"
run "$PMESHD" --config "$bad" --mesh-key-dir "$KEYS" --check
expect_eq "a misspelt key in pmesh.yaml: pmeshd --check exits 78" 78 "$RC"
expect_match "... naming file:line:col" "bad-pmesh.yaml:[0-9]+:[0-9]+: replica: unknown key" "$ERR"

# Negative fixtures: each refused, for the reason it states.
FIXTURES=("$DEPLOY_TESTS"/fixtures/invalid-*.yaml)
node "$DEPLOY_TESTS/validate.js" "${FIXTURES[@]}" >"$TMP/fixtures.out" 2>&1 || true
for f in "${FIXTURES[@]}"; do
    # Only this fixture's lines; rc 1 if it was refused.
    awk -v f="$f" '/^(ok|not ok) - /{on = index($0, "not ok - " f ": ") == 1} on' \
        "$TMP/fixtures.out" >"$TMP/fixture.out"
    rc=0
    grep -q "^not ok - $f: " "$TMP/fixtures.out" && rc=1
    expect_fixture "validate.js refuses $(basename "$f")" "$rc" "$TMP/fixture.out" "$f"
done
for f in "${POLICY_FIXTURES[@]}"; do
    run node "$DEPLOY_TESTS/policy.js" --require-curve "$f"
    expect_fixture "policy.js refuses $(basename "$f")" "$RC" "$TMP/run.out" "$f"
done

# The libpmesh example compiles against this tree's header and library
# (it runs in test_rehearsal.sh).
B=$(cd "$BUILD" && pwd)
# shellcheck disable=SC2046
check "deploy/examples/libpmesh/chain.c compiles with -Wall -Wextra -Werror" \
    cc -std=gnu11 -Wall -Wextra -Werror ${SANITIZE:+-fsanitize=$SANITIZE} -I"$SRC_DIR/node" -o "$TMP/chain" \
    "$SRC_DIR/deploy/examples/libpmesh/chain.c" "$B/lib/libpmesh.a" \
    $(pkg-config --libs libzmq libprotobuf-c) -lpthread

finish
