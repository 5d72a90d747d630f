#!/usr/bin/env bash
# test_gen_secrets.sh - scripts/gen-secrets prints two valid Secrets:
# pmesh-secrets, whose keys the agent accepts, and pmesh-etcd-tls, whose
# certificates verify against its CA with the names and usages etcd and the
# agents need (and a real etcd on loopback started with them admits a client
# with the client certificate and refuses one without); fresh every time;
# --out writes a private new file and never a tracked file in the repository.
. "$(dirname "$0")/lib.sh"

GEN=$SRC_DIR/scripts/gen-secrets
export PMESHD

run "$GEN"
expect_eq "gen-secrets exits 0" 0 "$RC"
cp "$TMP/run.out" "$TMP/s1.yaml"
run node "$DEPLOY_TESTS/validate.js" "$TMP/s1.yaml"
expect_eq "its output is a valid Kubernetes Secret" 0 "$RC"
expect_match "... named pmesh-secrets in namespace pmesh" $'name: pmesh-secrets\n  namespace: pmesh' "$(cat "$TMP/s1.yaml")"
expect_eq "two Secrets, both valid" 2 "$(grep -c '^ok - .*: Secret/' "$TMP/run.out")"

# doc FILE N: the Nth document (from 1) of the YAML stream FILE.
doc() { awk -v n="$2" 'BEGIN { d = 1 } /^---$/ { d++; next } d == n' "$1"; }
doc "$TMP/s1.yaml" 1 >"$TMP/s1-mesh.yaml"
doc "$TMP/s1.yaml" 2 >"$TMP/s1-etcd.yaml"
expect_match "the second is pmesh-etcd-tls in namespace pmesh" $'name: pmesh-etcd-tls\n  namespace: pmesh' "$(cat "$TMP/s1-etcd.yaml")"

# decode FILE KEY OUT: the base64 data of KEY in the Secret FILE, into OUT.
decode() {
    sed -n "s/^  $2: //p" "$1" | base64 -d >"$3"
}
mkdir -p "$TMP/keys"
decode "$TMP/s1.yaml" mesh.pub "$TMP/keys/mesh.pub"
decode "$TMP/s1.yaml" mesh.key "$TMP/keys/mesh.key"
decode "$TMP/s1.yaml" token-secret "$TMP/token"
run "$PMESHD" --bind tcp://127.0.0.1:1 --mesh-key-dir "$TMP/keys" --check
expect_eq "the agent accepts its mesh keypair (mesh.pub matches mesh.key)" 0 "$RC"
expect_match "the token key is 64 hex characters (32 random bytes)" '^[0-9a-f]{64}$' "$(cat "$TMP/token")"
decode "$TMP/s1.yaml" http-api-keys "$TMP/api-keys"
expect_match "http-api-keys: a write key for functions" '(^|'$'\n'')functions write [A-Za-z0-9_-]{43}('$'\n''|$)' "$(cat "$TMP/api-keys")"
expect_match "http-api-keys: a read key for readers" '(^|'$'\n'')readers read [A-Za-z0-9_-]{43}('$'\n''|$)' "$(cat "$TMP/api-keys")"

# The data keys are the ones the pods mount (prod overlay): pmesh-secrets by
# the agents, pmesh-etcd-tls by the agents and the etcd members.
render deploy/overlays/prod "$TMP/prod.yaml"
# mounted SECRET: the keys of SECRET that some pod of the prod render mounts.
mounted() {
    node -e '
const { readDocs } = require(process.argv[1] + "/k8s.js");
const fs = require("fs");
const keys = new Set();
for (const d of readDocs(fs.readFileSync(process.argv[2], "utf8"), "prod")) {
    const pod = d.spec && d.spec.template && d.spec.template.spec;
    for (const v of (pod && pod.volumes) || []) {
        const srcs = v.projected ? v.projected.sources || [] : v.secret ? [{ secret: { ...v.secret, name: v.secret.secretName } }] : [];
        for (const s of srcs)
            if (s.secret && s.secret.name === process.argv[3]) for (const i of s.secret.items) keys.add(i.key);
    }
}
console.log([...keys].sort().join(" "));
' "$DEPLOY_TESTS" "$TMP/prod.yaml" "$1"
}
datakeys() { sed -n '/^data:/,$s/^  \([^:]*\):.*/\1/p' "$1" | sort | tr '\n' ' ' | sed 's/ $//'; }
expect_eq "its data keys are the ones the prod DaemonSet mounts from pmesh-secrets" \
    "$(mounted pmesh-secrets)" "$(datakeys "$TMP/s1-mesh.yaml")"
expect_eq "pmesh-etcd-tls: its data keys are the ones the prod agents and etcd mount" \
    "$(mounted pmesh-etcd-tls)" "$(datakeys "$TMP/s1-etcd.yaml")"

# ---- etcd's TLS -------------------------------------------------------------------
E=$TMP/etcd-tls
mkdir -p "$E"
for k in ca.crt server.crt server.key client.crt client.key; do decode "$TMP/s1-etcd.yaml" "$k" "$E/$k"; done
run openssl verify -CAfile "$E/ca.crt" "$E/server.crt"
expect_eq "the server certificate verifies against the CA" "$E/server.crt: OK" "$OUT"
run openssl verify -CAfile "$E/ca.crt" "$E/client.crt"
expect_eq "the client certificate verifies against the CA" "$E/client.crt: OK" "$OUT"
run openssl verify -CAfile "$E/ca.crt" -purpose sslserver "$E/server.crt"
expect_eq "... the server certificate is good for a TLS server" 0 "$RC"
run openssl verify -CAfile "$E/ca.crt" -purpose sslclient "$E/server.crt"
expect_eq "... and for a TLS client (etcd peers)" 0 "$RC"
run openssl verify -CAfile "$E/ca.crt" -purpose sslclient "$E/client.crt"
expect_eq "the client certificate is good for a TLS client" 0 "$RC"
run openssl verify -CAfile "$E/ca.crt" -purpose sslserver "$E/client.crt"
expect_ne "... and not for a server" 0 "$RC"
sans=$(openssl x509 -in "$E/server.crt" -noout -ext subjectAltName 2>&1 | tail -n +2 | tr -d ' ' | tr ',' '\n')
for n in DNS:pmesh-etcd DNS:pmesh-etcd.pmesh.svc.cluster.local 'DNS:\*.pmesh-etcd-peers.pmesh.svc.cluster.local' \
    DNS:localhost IPAddress:127.0.0.1; do
    expect_match "the server certificate names ${n//\\/}" "(^|"$'\n'")$n("$'\n'"|\$)" "$sans"
done
expect_match "the client certificate has extendedKeyUsage clientAuth" "TLS Web Client Authentication" \
    "$(openssl x509 -in "$E/client.crt" -noout -ext extendedKeyUsage 2>&1)"
expect_match "the CA is a CA" "CA:TRUE" "$(openssl x509 -in "$E/ca.crt" -noout -ext basicConstraints 2>&1)"
pub() { openssl pkey -in "$1" -pubout 2>/dev/null | md5sum; }
cpub() { openssl x509 -in "$1" -noout -pubkey 2>/dev/null | md5sum; }
expect_eq "server.key is the server certificate's key" "$(cpub "$E/server.crt")" "$(pub "$E/server.key")"
expect_eq "client.key is the client certificate's key" "$(cpub "$E/client.crt")" "$(pub "$E/client.key")"

run "$GEN" --namespace other-ns --name my-secrets
cp "$TMP/run.out" "$TMP/s2.yaml"
expect_match "--namespace and --name are used" $'name: my-secrets\n  namespace: other-ns' "$(cat "$TMP/s2.yaml")"
expect_ne "every run makes new keys" "$(grep mesh.key "$TMP/s1.yaml")" "$(grep mesh.key "$TMP/s2.yaml")"
expect_ne "every run makes a new token key" "$(grep token-secret "$TMP/s1.yaml")" "$(grep token-secret "$TMP/s2.yaml")"
expect_match "--namespace: the etcd Secret is there too" $'name: pmesh-etcd-tls\n  namespace: other-ns' "$(cat "$TMP/s2.yaml")"
E2=$TMP/etcd-tls2
mkdir -p "$E2"
for k in ca.crt server.crt client.crt client.key; do decode "$TMP/s2.yaml" "$k" "$E2/$k"; done
expect_match "--namespace: the server certificate names the peers in that namespace" \
    'DNS:\*\.pmesh-etcd-peers\.other-ns\.svc\.cluster\.local' \
    "$(openssl x509 -in "$E2/server.crt" -noout -ext subjectAltName 2>&1)"
run openssl verify -CAfile "$E/ca.crt" "$E2/client.crt"
expect_ne "every run makes a new CA: another run's client certificate does not verify" 0 "$RC"

run "$GEN" --no-etcd
expect_eq "--no-etcd: one Secret" 1 "$(grep -c '^kind: Secret$' "$TMP/run.out")"
expect_no_match "--no-etcd: no pmesh-etcd-tls" "pmesh-etcd-tls" "$OUT"

run "$GEN" --namespace Bad_Name
expect_eq "an invalid namespace is a usage error" 64 "$RC"

run "$GEN" --out "$TMP/out.yaml"
expect_eq "--out FILE exits 0" 0 "$RC"
expect_eq "... prints nothing on stdout" "" "$OUT"
expect_eq "... writes FILE readable by its owner only" 600 "$(stat -c %a "$TMP/out.yaml")"
before=$(md5sum <"$TMP/out.yaml")
run "$GEN" --out "$TMP/out.yaml"
expect_eq "--out refuses to overwrite an existing secret" 73 "$RC"
expect_eq "... which is left as it was" "$before" "$(md5sum <"$TMP/out.yaml")"

# Inside the repository: refused unless git ignores the path.
run "$GEN" --out "$SRC_DIR/deploy/pmesh-secrets-test-$$.yaml"
expect_eq "--out into the repository (not ignored) is refused" 73 "$RC"
expect_eq "... and nothing is written there" no \
    "$([ -e "$SRC_DIR/deploy/pmesh-secrets-test-$$.yaml" ] && echo yes || echo no)"
ignored=$SRC_DIR/deploy/overlays/prod/secret-test-$$.yaml
run "$GEN" --out "$ignored"
expect_eq "--out to deploy/**/secret*.yaml (git-ignored) is allowed" 0 "$RC"
expect_eq "... and git would not track it" "" "$(git -C "$SRC_DIR" status --porcelain --ignored=no -- "$ignored" 2>/dev/null)"
rm -f "$ignored"

# ---- a real etcd with these certificates --------------------------------------------
# One member on loopback, as deploy/etcd/statefulset.yaml starts one: client
# TLS with client-cert-auth, peer TLS with the same certificate, a plain-HTTP
# health listener for the probes.
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
    echo "# SKIP: the real etcd check: etcd or etcdctl not installed (scripts/deps installs them)"
else
    export ETCDCTL_API=3
    for _ in 1 2 3; do
        CP=$(free_ports 1) PP=$(free_ports 1) MP=$(free_ports 1)
        bg etcd etcd --name m0 --data-dir "$TMP/etcd-data" \
            --listen-client-urls "https://127.0.0.1:$CP" --advertise-client-urls "https://localhost:$CP" \
            --listen-peer-urls "https://127.0.0.1:$PP" --initial-advertise-peer-urls "https://localhost:$PP" \
            --initial-cluster "m0=https://localhost:$PP" --initial-cluster-state new \
            --listen-metrics-urls "http://127.0.0.1:$MP" \
            --client-cert-auth=true --trusted-ca-file "$E/ca.crt" \
            --cert-file "$E/server.crt" --key-file "$E/server.key" \
            --peer-client-cert-auth=true --peer-trusted-ca-file "$E/ca.crt" \
            --peer-cert-file "$E/server.crt" --peer-key-file "$E/server.key" \
            --logger zap --log-level warn
        ETCD_PID=$BG_PID
        health() { curl -fsS "http://127.0.0.1:$MP/health" | grep -q '"health":"true"'; }
        wait_for 30 health && break
        kill "$ETCD_PID" 2>/dev/null || true
        wait "$ETCD_PID" 2>/dev/null || true
        rm -rf "$TMP/etcd-data"
        grep -q "address already in use" "$TMP/etcd.log" || break
    done
    run curl -fsS "http://127.0.0.1:$MP/health"
    expect_match "etcd starts with the server certificate and client-cert-auth (the readiness probe's /health says healthy)" \
        '"health":"true"' "$OUT"
    run curl -fsS "http://127.0.0.1:$MP/health?serializable=true"
    expect_match "the liveness probe's path answers healthy" '"health":"true"' "$OUT"
    ECTL=(etcdctl --endpoints "https://localhost:$CP" --cacert "$E/ca.crt" --dial-timeout 3s --command-timeout 5s)
    run "${ECTL[@]}" --cert "$E/client.crt" --key "$E/client.key" put /pmesh/prod/t v1
    expect_eq "etcdctl with the client certificate: put" 0 "$RC"
    run "${ECTL[@]}" --cert "$E/client.crt" --key "$E/client.key" get --print-value-only /pmesh/prod/t
    expect_eq "etcdctl with the client certificate: get" v1 "$OUT"
    run "${ECTL[@]}" get /pmesh/prod/t
    expect_ne "etcdctl without a client certificate is refused" 0 "$RC"
    expect_no_match "... and reads nothing" '^v1$' "$OUT"
    run "${ECTL[@]}" --cert "$E2/client.crt" --key "$E2/client.key" get /pmesh/prod/t
    expect_ne "etcdctl with another CA's client certificate is refused" 0 "$RC"
    # The agent's way in: libcurl to the v3 JSON gateway, by IP (SAN 127.0.0.1).
    key64=$(printf /pmesh/prod/t | base64)
    run curl -sS --cacert "$E/ca.crt" --cert "$E/client.crt" --key "$E/client.key" \
        "https://127.0.0.1:$CP/v3/kv/range" -d "{\"key\":\"$key64\"}"
    expect_match "curl with the client certificate reads /v3/kv/range" "\"value\":\"$(printf v1 | base64)\"" "$OUT"
    run curl -sS --cacert "$E/ca.crt" "https://127.0.0.1:$CP/v3/kv/range" -d "{\"key\":\"$key64\"}"
    expect_no_match "curl without a client certificate reads nothing" '"value"' "$OUT"
    # The agent itself, as the DaemonSet starts it: etcd over TLS with the
    # client certificate (coordination_ca_file / _cert_file / _key_file).
    if "$PMESHD" --help 2>/dev/null | grep -- --coordination-ca-file >/dev/null; then
        AP=$((CP + 100))
        bg agent "$PMESHD" --node tls-a --socket "$TMP/tls.sock" --bind "tcp://127.0.0.1:$AP" \
            --insecure --replicas 2 --coordination "etcd://127.0.0.1:$CP" \
            --coordination-prefix /pmesh/tlstest --coordination-ca-file "$E/ca.crt" \
            --coordination-cert-file "$E/client.crt" --coordination-key-file "$E/client.key"
        APID=$BG_PID
        recorded() {
            "${ECTL[@]}" --cert "$E/client.crt" --key "$E/client.key" get --prefix --keys-only \
                /pmesh/tlstest/spaces/ | grep -q tls-a
        }
        if wait_for 15 recorded; then
            ok "the agent reaches etcd over TLS with the client certificate: its id space is recorded"
        else
            not_ok "the agent reaches etcd over TLS with the client certificate: its id space is recorded" \
                "$(tail -5 "$TMP/agent.log")"
        fi
        kill "$APID" 2>/dev/null || true
        wait_exit "$APID" 10
        run "$PMESHD" --node tls-b --socket "$TMP/tls2.sock" --bind "tcp://127.0.0.1:$((AP + 1))" \
            --insecure --replicas 2 --coordination "etcd://127.0.0.1:$CP" \
            --coordination-ca-file "$E/ca.crt" --coordination-cert-file "$E/client.crt" --check
        expect_eq "pmeshd --check takes the coordination TLS keys" 0 "$RC"
    else
        skip "the agent over TLS" "this pmeshd has no --coordination-ca-file"
    fi
    kill "$ETCD_PID" 2>/dev/null || true
    wait_exit "$ETCD_PID" 10
fi

# Nothing left behind in the temp dir.
expect_eq "no key material left in TMPDIR" "" "$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'pmesh-secrets.*' -user "$(id -u)" -newer "$TMP/s1.yaml" 2>/dev/null)"

finish
