#!/usr/bin/env bash
# Issue 11 leftovers, against a real etcd started here on loopback ports
# (stopped by PID), with client TLS (--client-cert-auth, certificates from
# scripts/gen-secrets) when openssl is there, else plain http (said so):
#   1. id spaces stop piling up: agent n1 (--replicas 2, with n2 as its
#      backup) restarted 30 times on the same data dir, alternately SIGTERM
#      and SIGKILL. A restart mints in the space its predecessor minted in
#      unless an heir took it over meanwhile (node/mint.h: checked with the
#      heir paused) and leaves its old primary behind, empty; its owner
#      retires it once it holds nothing and deletes its record by
#      compare-and-delete (R7), so the store holds a bounded number of
#      records (etcdctl get --prefix --keys-only, counted) after every
#      restart, the agents' status lists stay as short, and every
#      acknowledged create and resolve stays readable from both agents;
#   2. `pmesh space force-owner` is a request the agent carries out with its
#      own store client: against an etcd that demands a client certificate,
#      which the CLI does not have, the agent's CAS succeeds (the CLI prints
#      FORCED, the agent logs PM-COORD-FORCED, the record names it); a
#      store client without the certificate is refused by etcd, so nobody
#      else could have made that change.
. "$(dirname "$0")/mesh_lib.sh"
. "$(dirname "$0")/coord_lib.sh"

coord_need_etcd
RESTARTS=${RESTARTS:-30}
BOUND=4 # n2's primary, n1's primary, the space holding the data, one being retired

EPORT=$(free_ports 2)
EP=127.0.0.1:$EPORT
PREFIX=/pmesh/retire$$
export ETCDCTL_API=3

# ---- TLS material (scripts/gen-secrets) ------------------------------------------------
TLS=0
ECTL_TLS=()
AGENT_TLS=()
SCHEME=http
if command -v openssl >/dev/null 2>&1 &&
    PMESHD=$PMESHD "$SRC_DIR/scripts/gen-secrets" --out "$TMP/secrets.yaml" 2>"$TMP/gen-secrets.log"; then
    mkdir -p "$TMP/etcd-tls"
    if python3 - "$TMP/secrets.yaml" "$TMP/etcd-tls" <<'EOF'; then
import base64, sys
text = open(sys.argv[1]).read()
doc = [d for d in text.split("\n---\n") if "name: pmesh-etcd-tls" in d][0]
data = doc.split("\ndata:\n", 1)[1]
for line in data.splitlines():
    k, v = line.strip().split(": ", 1)
    with open(f"{sys.argv[2]}/{k}", "wb") as f:
        f.write(base64.b64decode(v))
EOF
        D=$TMP/etcd-tls
        chmod 600 "$D"/*.key
        TLS=1
        SCHEME=https
        ECTL_TLS=(--cacert "$D/ca.crt" --cert "$D/client.crt" --key "$D/client.key")
        AGENT_TLS=(--coordination-ca-file "$D/ca.crt" --coordination-cert-file "$D/client.crt"
            --coordination-key-file "$D/client.key")
    fi
fi
[ "$TLS" = 1 ] || echo "# TLS: skipped (no openssl, or scripts/gen-secrets failed: $(tail -1 "$TMP/gen-secrets.log" 2>/dev/null)); plain http"

start_etcd() {
    local tls=()
    [ "$TLS" = 1 ] && tls=(--cert-file "$D/server.crt" --key-file "$D/server.key"
        --trusted-ca-file "$D/ca.crt" --client-cert-auth)
    bg etcd etcd --name t --data-dir "$TMP/etcd-data" "${tls[@]}" \
        --listen-client-urls "$SCHEME://$EP" --advertise-client-urls "$SCHEME://$EP" \
        --listen-peer-urls "http://127.0.0.1:$((EPORT + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((EPORT + 1))" \
        --initial-cluster "t=http://127.0.0.1:$((EPORT + 1))" --logger zap --log-level error
    ETCD_PID=$BG_PID
    wait_for 30 ectl endpoint health ||
        { echo "etcd did not come up" >&2; _lib_dump_logs >&2; exit 1; }
}
ectl() { timeout -k 2 10 etcdctl --endpoints "$SCHEME://$EP" --dial-timeout 2s "${ECTL_TLS[@]}" "$@"; }
start_etcd

n_records() { ectl get --prefix --keys-only "$PREFIX/spaces/" 2>/dev/null | grep -c .; }
_records_le() { [ "$(n_records)" -le "$1" ]; }
# spaces_known K: how many id spaces nK's coordinator knows (status).
spaces_known() {
    "$PMESH" --socket "${MESH_SOCK[$1]}" status 2>/dev/null |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)["coordination"]["spaces"]))' 2>/dev/null
}

coord_mesh_dir
write_cmd() { # K DATA_DIR
    MESH_SOCK[$1]=$MESH_DIR/n$1.sock
    local cmd=("$PMESHD" --node "n$1" --socket "$MESH_DIR/n$1.sock"
        --bind "tcp://127.0.0.$1:$MESH_PORT" --seed "tcp://127.0.0.1:$MESH_PORT" --insecure
        --data-dir "$2" --replicas 2 --coordination "etcd://$EP" "${AGENT_TLS[@]}"
        --coordination-prefix "$PREFIX" --probe-interval 100ms --retire-interval 300ms
        --log-level info)
    printf '%q ' "${cmd[@]}" >"$MESH_DIR/n$1.cmd"
}
for k in 1 2; do
    write_cmd "$k" "$MESH_DIR/n$k.data"
    mesh_restart "$k" || { _lib_dump_logs >&2; exit 1; }
done
for k in 1 2; do wait_for 15 _ready "$k" || true; done
expect_eq "n1 read the store over $SCHEME" true "$(mstat 1 coordination.ready)"

# ---- 1. restarts: records do not pile up ------------------------------------------------
S0=$(primary 1)
expect_match "n1 records its id space" "^n1-" "$S0"
create_many 1 6
expect_eq "six creates acknowledged by n1 (its backup n2 recorded in sync)" 6 "${#IDS[@]}"
pm 1 resolve "${IDS[0]}" "kept-1"
expect_eq "a resolve acknowledged" 0 "$RC"
pm 1 resolve "${IDS[1]}" "kept-2"
MAXREC=0
OVER=0
P2=$(primary 2) # n2 runs all along: its primary stays its own
for r in $(seq "$RESTARTS"); do
    if [ $((r % 2)) = 0 ]; then
        kill -9 "${MESH_PID[1]}"
    else
        kill -TERM "${MESH_PID[1]}"
    fi
    wait_exit "${MESH_PID[1]}" 10 || true
    mesh_restart 1 || { not_ok "n1 restarts ($r)"; break; }
    wait_for 15 _ready 1 || true
    # Settled: the old primaries are taken over, retired and deleted.
    if ! wait_for 20 _records_le "$BOUND"; then
        OVER=$((OVER + 1))
        echo "# restart $r: $(n_records) records: $(ectl get --prefix --keys-only "$PREFIX/spaces/" | grep . | tr '\n' ' ')"
    fi
    n=$(n_records)
    [ "$n" -gt "$MAXREC" ] && MAXREC=$n
done
echo "# $RESTARTS restarts of n1: at most $MAXREC records in the store after each"
# A restarted agent mints where its predecessor minted (node/mint.h) when
# no heir took that space over meanwhile: n2 (the only heir) is paused
# across one more restart of n1, which resumes the space itself by the
# store (R3, as the next process on the data dir); its next create lands
# there, not in its new primary.
create_ok 1
MS=${OUT%%~*}
IDS+=("$OUT")
resumed() { grep -c "PM-MINT-RESUMED id space $MS " "$MESH_DIR/n1.log" || true; }
_resumed_more() { [ "$(resumed)" -gt "$1" ]; }
before=$(resumed)
kill -STOP "${MESH_PID[2]}"
kill -9 "${MESH_PID[1]}"
wait_exit "${MESH_PID[1]}" 10 || true
mesh_restart 1 || { kill -CONT "${MESH_PID[2]}"; _lib_dump_logs >&2; exit 1; }
wait_for 15 _resumed_more "$before" || true
kill -CONT "${MESH_PID[2]}"
expect_eq "restarted with its heir paused, n1 resumes the space it minted in ($MS)" 1 \
    "$([ "$(resumed)" -gt "$before" ] && echo 1)"
create_ok 1
expect_eq "... and its next create lands there, not in a new space" "$MS" "${OUT%%~*}"
IDS+=("$OUT")
expect_eq "after each of $RESTARTS restarts the store holds at most $BOUND records" 0 "$OVER"
# Settled: n2's primary, n1's primary and the spaces holding the data (the
# first one, and the one n1 mints in since the paused-heir restart).
wait_for 20 _records_le 4 || true
for key in $(ectl get --prefix --keys-only "$PREFIX/spaces/" | grep .); do
    echo "# record ${key##*/}: $(ectl get --print-value-only "$key")"
done
NREC=$(n_records)
expect_lt "... and settles at 4 or fewer ($NREC): not one per restart" "$NREC" 5
expect_lt "n1's status lists as few spaces ($(spaces_known 1))" "$(spaces_known 1)" "$((BOUND + 1))"
expect_lt "n2's status lists as few spaces ($(spaces_known 2))" "$(spaces_known 2)" "$((BOUND + 1))"
expect_eq "the space holding the data is still recorded" 1 "$([ -n "$(record "$S0")" ] && echo 1)"
expect_eq "n2, alive all along, still owns its primary $P2 at epoch 1 (a restarted n1 took nothing from it)" \
    "n2 1" "$(rec_field "$P2" owner) $(rec_field "$P2" epoch)"
DELETED=$(cat "$MESH_DIR"/n1.log "$MESH_DIR"/n2.log | grep -c "PM-COORD-DELETED.*retired" || true)
expect_lt "old primaries were retired and deleted (PM-COORD-DELETED: $DELETED)" "$((RESTARTS * 2 / 3))" "$DELETED"
for k in 1 2; do
    lost=0
    for id in "${IDS[@]}"; do
        pm "$k" get "$id" || lost=$((lost + 1))
    done
    expect_eq "every acknowledged create is readable through n$k" 0 "$lost"
    pm "$k" get "${IDS[0]}"
    expect_match "... and the acknowledged resolve (n$k)" '"state":"resolved".*"value":"kept-1"' "$OUT"
done

# ---- 2. force-owner through the agent, with its TLS ------------------------------------
# Nobody in sync for S0 alive: kill both; n2 comes back on a fresh data dir
# (a new process in no in-sync set) and is forced to own S0.
OWNER=$(rec_field "$S0" owner)
EPOCH=$(rec_field "$S0" epoch)
kill -9 "${MESH_PID[1]}" "${MESH_PID[2]}"
wait_exit "${MESH_PID[1]}" 10 || true
wait_exit "${MESH_PID[2]}" 10 || true
write_cmd 2 "$MESH_DIR/n2-fresh.data"
mesh_restart 2 || { _lib_dump_logs >&2; exit 1; }
wait_for 15 _ready 2 || true
_unavailable() {
    pm 2 get "${IDS[2]}"
    [ "$RC" != 0 ] && [[ $ERR == *UNAVAILABLE* ]]
}
wait_for 15 _unavailable || true
expect_match "S0 waits: UNAVAILABLE (its owner $OWNER and its in-sync set are gone)" "UNAVAILABLE" "$ERR"
pm 2 space force-owner "$S0"
expect_eq "force-owner without --accept-data-loss: refused (usage)" 64 "$RC"
pm 2 space force-owner "$S0" --accept-data-loss
expect_eq "force-owner --accept-data-loss through the agent: done" 0 "$RC"
expect_match "... the CLI says what it cost" "FORCED: id space $S0 is owned by n2 at epoch $((EPOCH + 1)) \(was $OWNER at epoch $EPOCH\).*lost" "$ERR"
expect_eq "the store names n2 the owner at the next epoch" "n2 $((EPOCH + 1))" \
    "$(rec_field "$S0" owner) $(rec_field "$S0" epoch)"
expect_eq "... logged PM-COORD-FORCED" 1 "$([ "$(log_count 2 PM-COORD-FORCED)" -ge 1 ] && echo 1)"
_served() { pm 2 get "${IDS[2]}"; [[ $ERR != *UNAVAILABLE* ]]; }
check=ok
wait_for 10 _served || check=no
expect_eq "n2 serves S0 now (from its own, empty, copy)" ok "$check"
pm 2 space force-owner nosuch-space --accept-data-loss
expect_eq "force-owner of a space the store does not know: refused" 1 "$RC"
expect_match "... saying why" "no record" "$ERR"
if [ "$TLS" = 1 ]; then
    run timeout -k 2 10 etcdctl --endpoints "$SCHEME://$EP" --dial-timeout 2s --cacert "$D/ca.crt" \
        --command-timeout 3s get --prefix --keys-only "$PREFIX/spaces/"
    expect_ne "a store client without the client certificate is refused by etcd" 0 "$RC"
fi

finish
