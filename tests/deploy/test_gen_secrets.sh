#!/usr/bin/env bash
# test_gen_secrets.sh - scripts/gen-secrets prints a valid Secret whose keys
# the agent accepts, fresh every time; --out writes a private new file and
# never a tracked file in the repository.
. "$(dirname "$0")/lib.sh"

GEN=$SRC_DIR/scripts/gen-secrets
export PMESHD

run "$GEN"
expect_eq "gen-secrets exits 0" 0 "$RC"
cp "$TMP/run.out" "$TMP/s1.yaml"
run node "$DEPLOY_TESTS/validate.js" "$TMP/s1.yaml"
expect_eq "its output is a valid Kubernetes Secret" 0 "$RC"
expect_match "... named pmesh-secrets in namespace pmesh" $'name: pmesh-secrets\n  namespace: pmesh' "$(cat "$TMP/s1.yaml")"

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

# The data keys are the ones the DaemonSet mounts (prod overlay).
render deploy/overlays/prod "$TMP/prod.yaml"
mounted=$(node -e '
const { readDocs } = require(process.argv[1] + "/k8s.js");
const fs = require("fs");
const ds = readDocs(fs.readFileSync(process.argv[2], "utf8"), "prod").find((d) => d.kind === "DaemonSet");
const keys = [];
for (const v of ds.spec.template.spec.volumes)
    for (const s of (v.projected && v.projected.sources) || [])
        if (s.secret && s.secret.name === "pmesh-secrets") keys.push(...s.secret.items.map((i) => i.key));
console.log(keys.sort().join(" "));
' "$DEPLOY_TESTS" "$TMP/prod.yaml")
made=$(sed -n '/^data:/,$s/^  \([^:]*\):.*/\1/p' "$TMP/s1.yaml" | sort | tr '\n' ' ' | sed 's/ $//')
expect_eq "its data keys are the ones the prod DaemonSet mounts from pmesh-secrets" "$mounted" "$made"

run "$GEN" --namespace other-ns --name my-secrets
cp "$TMP/run.out" "$TMP/s2.yaml"
expect_match "--namespace and --name are used" $'name: my-secrets\n  namespace: other-ns' "$(cat "$TMP/s2.yaml")"
expect_ne "every run makes new keys" "$(grep mesh.key "$TMP/s1.yaml")" "$(grep mesh.key "$TMP/s2.yaml")"
expect_ne "every run makes a new token key" "$(grep token-secret "$TMP/s1.yaml")" "$(grep token-secret "$TMP/s2.yaml")"

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

# Nothing left behind in the temp dir.
expect_eq "no key material left in TMPDIR" "" "$(find "${TMPDIR:-/tmp}" -maxdepth 1 -name 'pmesh-secrets.*' -user "$(id -u)" -newer "$TMP/s1.yaml" 2>/dev/null)"

finish
