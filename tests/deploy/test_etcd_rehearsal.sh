#!/usr/bin/env bash
# test_etcd_rehearsal.sh - deploy/etcd's StatefulSet rehearsed on this
# machine: three etcd members started with the container's own args from
# the render (the pod DNS names mapped to localhost and a port per member,
# the Secret's files from scripts/gen-secrets, a data dir each). They form
# one cluster over peer TLS; the probes' paths answer on the metrics
# listener; a client with the Secret's client certificate writes on one
# member and reads on another, one without it is refused; with one member
# stopped the other two keep quorum, and the member restarted on its old
# data dir (--initial-* ignored) rejoins and catches up. Every etcd is
# stopped by PID. Skipped if etcd is not installed.
. "$(dirname "$0")/lib.sh"

if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
    echo "# SKIP: etcd or etcdctl not installed (scripts/deps installs etcd-server etcd-client)"
    finish
fi
export ETCDCTL_API=3

render deploy/etcd "$TMP/etcd.yaml" || {
    not_ok "deploy/etcd renders" "$(cat "$TMP/etcd.yaml.err")"
    finish
}
# The container's args (one per line), $(POD_NAMESPACE) expanded; the
# replicas; the probes' paths.
# shellcheck disable=SC2016 # JavaScript, not shell
node -e '
const { readDocs } = require(process.argv[1] + "/k8s.js");
const fs = require("fs");
const sts = readDocs(fs.readFileSync(process.argv[2], "utf8"), "etcd").find((d) => d.kind === "StatefulSet");
const c = sts.spec.template.spec.containers[0];
const ns = sts.metadata.namespace;
const out = process.argv[3];
fs.writeFileSync(out + "/args", c.args.map((a) => a.replace(/\$\(POD_NAMESPACE\)/g, ns)).join("\n") + "\n");
fs.writeFileSync(out + "/replicas", String(sts.spec.replicas) + "\n");
fs.writeFileSync(out + "/ready", c.readinessProbe.httpGet.path + "\n");
fs.writeFileSync(out + "/live", c.livenessProbe.httpGet.path + "\n");
fs.writeFileSync(out + "/peers", `${sts.spec.serviceName}.${ns}.svc.cluster.local\n`);
' "$DEPLOY_TESTS" "$TMP/etcd.yaml" "$TMP"
N=$(cat "$TMP/replicas")
PEERS=$(cat "$TMP/peers")
expect_eq "the StatefulSet runs 3 members" 3 "$N"
check "its args turn on client certificate auth" grep -qx -- '--client-cert-auth=true' "$TMP/args"
check "... and peer certificate auth" grep -qx -- '--peer-client-cert-auth=true' "$TMP/args"

# The Secret, as the pods would mount it (/etc/etcd/tls).
PMESHD=$PMESHD "$SRC_DIR/scripts/gen-secrets" >"$TMP/secrets.yaml"
mkdir -p "$TMP/tls"
for k in ca.crt server.crt server.key client.crt client.key; do
    sed -n "s/^  $k: //p" "$TMP/secrets.yaml" | base64 -d >"$TMP/tls/$k"
done

# Ports per member: client, peer, metrics.
declare -a CP PP MP PID
for i in $(seq 0 $((N - 1))); do
    CP[i]=$(free_ports 1) PP[i]=$(free_ports 1) MP[i]=$(free_ports 1)
done
# args_of I: member I's args, as its pod gets them, mapped to this machine.
args_of() {
    local i=$1 j sed_args=()
    for j in $(seq 0 $((N - 1))); do
        sed_args+=(-e "s|pmesh-etcd-$j\.$PEERS:2379|localhost:${CP[j]}|g"
            -e "s|pmesh-etcd-$j\.$PEERS:2380|localhost:${PP[j]}|g")
    done
    sed -e "s|\$(POD_NAME)|pmesh-etcd-$i|g" "${sed_args[@]}" \
        -e "s|0\.0\.0\.0:2379|127.0.0.1:${CP[i]}|" -e "s|0\.0\.0\.0:2380|127.0.0.1:${PP[i]}|" \
        -e "s|0\.0\.0\.0:2381|127.0.0.1:${MP[i]}|" \
        -e "s|/etc/etcd/tls/|$TMP/tls/|" -e "s|/var/lib/etcd/|$TMP/m$i/|" "$TMP/args"
}
start_member() {
    local i=$1
    mapfile -t a < <(args_of "$i")
    bg "etcd$i" etcd "${a[@]}"
    PID[i]=$BG_PID
}
mkdir -p "$TMP/m0" "$TMP/m1" "$TMP/m2"
args_of 1 >"$TMP/args1"
expect_match "member 1's args: its name and its peers by their stable names (mapped)" \
    "--name=pmesh-etcd-1"$'\n'".*--initial-cluster=pmesh-etcd-0=https://localhost:${PP[0]},pmesh-etcd-1=https://localhost:${PP[1]},pmesh-etcd-2=https://localhost:${PP[2]}" \
    "$(cat "$TMP/args1")"
for i in 0 1 2; do start_member "$i"; done

READY=$(cat "$TMP/ready")
LIVE=$(cat "$TMP/live")
# expect_fn NAME FUNCTION ARGS...: ok if the shell function succeeds.
expect_fn() {
    local name=$1
    shift
    if "$@"; then ok "$name"; else not_ok "$name" "$* failed"; fi
}
probe() { curl -fsS -m 2 "http://127.0.0.1:${MP[$1]}$2" 2>/dev/null | grep -q '"health":"true"'; }
ready_all() { probe 0 "$READY" && probe 1 "$READY" && probe 2 "$READY"; }
if wait_for 60 ready_all; then
    ok "3 members form a cluster over peer TLS: every readiness probe ($READY) says healthy"
else
    not_ok "3 members form a cluster over peer TLS: every readiness probe ($READY) says healthy"
    finish
fi
expect_fn "the liveness probe's path ($LIVE) answers healthy" probe 1 "$LIVE"

ep() { echo "https://localhost:${CP[$1]}"; }
ECTL=(etcdctl --cacert "$TMP/tls/ca.crt" --cert "$TMP/tls/client.crt" --key "$TMP/tls/client.key"
    --dial-timeout 3s --command-timeout 5s)
run "${ECTL[@]}" --endpoints "$(ep 0)" member list
expect_eq "member list: the three, by their pod names" "pmesh-etcd-0 pmesh-etcd-1 pmesh-etcd-2" \
    "$(cut -d, -f3 <<<"$OUT" | tr -d ' ' | sort | tr '\n' ' ' | sed 's/ $//')"
expect_eq "... with https peer URLs" 3 "$(grep -c ', https://localhost:[0-9]*, https://' <<<"$OUT" || true)"
run "${ECTL[@]}" --endpoints "$(ep 0)" put /pmesh/prod/k v1
expect_eq "the agents' client certificate: put on member 0" 0 "$RC"
run "${ECTL[@]}" --endpoints "$(ep 2)" get --print-value-only /pmesh/prod/k
expect_eq "... read back on member 2" v1 "$OUT"
run etcdctl --cacert "$TMP/tls/ca.crt" --dial-timeout 2s --command-timeout 3s --endpoints "$(ep 1)" get /pmesh/prod/k
expect_ne "no client certificate: refused" 0 "$RC"

# One member away (the PodDisruptionBudget's one): the others keep quorum.
kill -TERM "${PID[2]}"
wait_exit "${PID[2]}" 15
expect_ne "member 2 stops on SIGTERM" timeout "$RC"
expect_fn "two members keep quorum: member 0 is ready" wait_for 20 probe 0 "$READY"
run "${ECTL[@]}" --endpoints "$(ep 1)" put /pmesh/prod/k v2
expect_eq "... and takes writes" 0 "$RC"
# Restarted on its old data dir, with the same args (--initial-* ignored).
start_member 2
if wait_for 60 probe 2 "$READY"; then
    ok "member 2 restarted on its data dir rejoins (ready)"
else
    not_ok "member 2 restarted on its data dir rejoins (ready)"
fi
got() { [ "$("${ECTL[@]}" --endpoints "$(ep 2)" get --print-value-only /pmesh/prod/k 2>/dev/null)" = v2 ]; }
expect_fn "... and has the write made while it was away" wait_for 20 got

for i in 0 1 2; do kill -TERM "${PID[i]}" 2>/dev/null || true; done
for i in 0 1 2; do wait_exit "${PID[i]}" 15; done
finish
