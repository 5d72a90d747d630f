#!/usr/bin/env bash
# The configuration store client (mesh/coord.h) against a real etcd started
# here on loopback ports with its own data dir: create-if-absent and CAS,
# compare-and-delete, races between two clients (exactly one winner, the loser handed the
# winner's record), a watch seeing changes made with etcdctl (and malformed
# ones as BAD), etcd SIGKILLed (UNAVAILABLE within the timeout, no hang) and
# restarted on its data dir (the watch resumes without missing a change), a
# hung etcd (SIGSTOP: UNAVAILABLE at the timeout), fail-over from a dead
# endpoint, compaction (RESYNC), and the CAS round-trip latency.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/coord_lib.sh"

coord_need_etcd
CTL=$BIN/coordctl
[ -x "$CTL" ] || { echo "no $CTL; build first (make all)" >&2; exit 1; }

PORT=$(free_ports 5) # PORT..PORT+4
PEER=$((PORT + 1))
DEAD=$((PORT + 2)) # nothing listens here
EP=127.0.0.1:$PORT
URL=etcd://$EP
PREFIX=/pmesh/t$$
TIMEOUT=2000
export ETCDCTL_API=3

ETCD_RUNS=0
start_etcd() {
    ETCD_RUNS=$((ETCD_RUNS + 1))
    bg "etcd$ETCD_RUNS" etcd --name t --data-dir "$TMP/etcd-data" \
        --listen-client-urls "http://$EP" --advertise-client-urls "http://$EP" \
        --listen-peer-urls "http://127.0.0.1:$PEER" --initial-advertise-peer-urls "http://127.0.0.1:$PEER" \
        --initial-cluster "t=http://127.0.0.1:$PEER" --logger zap --log-level error
    ETCD_PID=$BG_PID
    wait_for 30 etcdctl --endpoints "$EP" --dial-timeout 1s endpoint health ||
        { echo "etcd did not come up" >&2; _lib_dump_logs >&2; exit 1; }
}
ectl() { timeout -k 2 20 etcdctl --endpoints "$EP" --dial-timeout 2s "$@"; }
ctl() { run "$CTL" --timeout "$TIMEOUT" "$URL" "$PREFIX" "$@"; }
field() { # NAME LINE -> value of NAME=... in LINE
    sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2" | head -1
}
# count_lines FILE ERE
count_lines() { grep -cE "$2" "$1" 2>/dev/null || true; }
wait_lines() { # SECONDS FILE ERE N: until FILE has at least N lines matching ERE || true
    local s=$1 f=$2 re=$3 n=$4
    wait_for "$s" bash -c "[ \$(grep -cE '$re' '$f' 2>/dev/null || true) -ge $n ]"
}

start_etcd

# ---- create-if-absent and CAS -----------------------------------------------
ctl get s1
expect_eq "get of an absent space: NOT_FOUND (exit 3)" "3 NOT_FOUND" "$RC $(cut -d' ' -f2 <<<"$OUT")"
ctl create s1 node-a 11 1 node-b:22,node-c:33
expect_eq "create: OK" 0 "$RC"
expect_match "... the stored record comes back" "CREATE OK .*space=s1 owner=node-a pid=11 epoch=1 .*in_sync=node-b:22,node-c:33" "$OUT"
REV=$(field mod "$OUT")
ctl create s1 node-b 22 1
expect_eq "create again: CONFLICT (exit 2)" 2 "$RC"
expect_match "... carrying the record that exists" "CREATE CONFLICT .*owner=node-a pid=11 epoch=1 mod=$REV " "$OUT"
ctl get s1
expect_match "get: the record at its revision" "GET OK .*owner=node-a .*mod=$REV " "$OUT"
ctl cas s1 "$REV" node-b 22 2 node-c:33
expect_eq "CAS from the current revision: OK" 0 "$RC"
REV2=$(field mod "$OUT")
expect_lt "... at a later revision" "$REV" "$REV2"
ctl cas s1 "$REV" node-c 33 2
expect_eq "CAS from a stale revision: CONFLICT" 2 "$RC"
expect_match "... carrying the current record" "CAS CONFLICT .*owner=node-b pid=22 epoch=2 mod=$REV2 " "$OUT"
ctl cas nosuch 5 node-a 1 1
expect_eq "CAS of an absent space: NOT_FOUND" 3 "$RC"
ectl put "$PREFIX/spaces/junk" 'not json' >/dev/null
ctl get junk
expect_eq "malformed data in the store: BAD (exit 5)" 5 "$RC"
expect_match "... with a message" "msg=.*not a JSON object" "$OUT"
ectl del "$PREFIX/spaces/junk" >/dev/null

# ---- races: two clients, two connections, one revision ----------------------
ctl race r1 30
expect_eq "two candidates CAS to the next epoch: exactly one wins, 30 rounds" 0 "$RC"
expect_match "... every round" "exactly_one_winner=30 " "$OUT"
ctl shrink-race r2 30
expect_eq "set shrink vs takeover from one revision: exactly one wins, 30 rounds" 0 "$RC"
expect_match "... every round" "exactly_one_winner=30 " "$OUT"
echo "# $(tail -1 <<<"$OUT")"

# ---- a watch sees what etcdctl does --------------------------------------------
ectl put "/elsewhere/spaces/ext" "{}" >/dev/null # another mesh: in no list, no watch
bg watch "$CTL" --timeout "$TIMEOUT" "$URL" "$PREFIX" watch
WATCH_PID=$BG_PID
W=$TMP/watch.out
wait_lines 10 "$W" '^WATCH OK' 1 || not_ok "the watch is established"
REC='{"v":1,"space":"ext","owner":"node-x","owner_pid":"7","epoch":9,"in_sync":[]}'
ectl put "$PREFIX/spaces/ext" "$REC" >/dev/null
wait_lines 10 "$W" '^EVENT OK .*space=ext owner=node-x pid=7 epoch=9' 1 || true
expect_eq "the watch sees a record put with etcdctl" 1 "$(count_lines "$W" '^EVENT OK .*space=ext owner=node-x')"
ectl put "$PREFIX/spaces/ext" '{"v":1,"space":"other"}' >/dev/null
wait_lines 10 "$W" '^EVENT BAD' 1 || true
expect_match "... and a malformed one as BAD naming the space" "EVENT BAD .*space=ext.*msg=.*another space" "$(grep '^EVENT BAD' "$W")"
ectl del "$PREFIX/spaces/ext" >/dev/null
wait_lines 10 "$W" '^EVENT OK .*deleted=1 space=ext' 1 || true
expect_eq "... and a delete" 1 "$(count_lines "$W" '^EVENT OK .*deleted=1 space=ext')"
# compare-and-delete (pm_coord_delete): only at the revision read.
ctl create d1 node-a 11 1
DREV=$(field mod "$OUT")
ctl cas d1 "$DREV" node-a 11 1 node-b:22
DREV2=$(field mod "$OUT")
ctl delete d1 "$DREV"
expect_eq "compare-and-delete at a stale revision: CONFLICT" 2 "$RC"
expect_match "... carrying the current record" "DELETE CONFLICT .*space=d1 owner=node-a .*mod=$DREV2 " "$OUT"
ctl get d1
expect_eq "... and nothing deleted" 0 "$RC"
ctl delete d1 "$DREV2"
expect_eq "compare-and-delete at the current revision: OK" 0 "$RC"
expect_match "... at a later revision, with no record" "^DELETE OK rev=[0-9]+ ms=" "$OUT"
ctl get d1
expect_eq "... the record is gone" 3 "$RC"
ctl delete d1 "$DREV2"
expect_eq "delete again: NOT_FOUND" 3 "$RC"
wait_lines 10 "$W" '^EVENT OK .*deleted=1 space=d1' 1 || true
expect_eq "the watch reports the deletion" 1 "$(count_lines "$W" '^EVENT OK .*deleted=1 space=d1')"
ctl list
expect_eq "list: OK" 0 "$RC"
expect_match "... every space under the prefix (s1, r1, r2)" "LIST OK .* n=3 " "$OUT"

# ---- CAS latency -----------------------------------------------------------------
ctl bench b1 1000
expect_eq "1000 sequential CAS round trips" 0 "$RC"
echo "# $OUT"
BENCH=$OUT

# ---- etcd SIGKILLed -----------------------------------------------------------
kill -KILL "$ETCD_PID"
wait "$ETCD_PID" 2>/dev/null || true
wait_lines 10 "$W" '^WATCH UNAVAILABLE' 1 || true
expect_eq "the watch says it broke" 1 "$(count_lines "$W" '^WATCH UNAVAILABLE')"
T0=$(now_ms)
ctl get s1
T1=$(now_ms)
expect_eq "etcd dead: get is UNAVAILABLE (exit 4)" 4 "$RC"
expect_lt "... within the timeout ($TIMEOUT ms)" "$(field ms "$OUT")" "$TIMEOUT"
expect_lt "... and the program did not hang" $((T1 - T0)) $((TIMEOUT + 3000))
echo "# UNAVAILABLE with etcd killed (connection refused): $(field ms "$OUT") ms"
DEAD_MS=$(field ms "$OUT")
ctl cas s1 "$REV2" node-c 33 3
expect_eq "etcd dead: CAS is UNAVAILABLE" 4 "$RC"
expect_match "... saying the outcome is unknown" "may or may not" "$OUT"

# ---- restarted on its data dir: the watch resumes, missing nothing ---------------
# The watcher is frozen while etcd restarts and three changes are made, so it
# can only learn of them by resuming from the revision it had reached.
BEFORE=$(count_lines "$W" '^EVENT ')
kill -STOP "$WATCH_PID"
start_etcd
for i in 1 2 3; do
    ectl put "$PREFIX/spaces/late$i" \
        "{\"v\":1,\"space\":\"late$i\",\"owner\":\"n\",\"owner_pid\":\"$i\",\"epoch\":1,\"in_sync\":[]}" >/dev/null
done
kill -CONT "$WATCH_PID"
wait_lines 15 "$W" '^WATCH OK' 2 || not_ok "the watch is re-established after etcd restarts"
wait_lines 10 "$W" '^EVENT OK .*space=late3 ' 1 || true
expect_eq "the watch delivers the three changes made while it was away" 3 \
    "$(count_lines "$W" '^EVENT OK .*space=late[123] ')"
# Every revision from the watch's first event to its last, once, in order.
REVS=$(grep '^EVENT ' "$W" | sed 's/^EVENT [A-Z_]* rev=\([0-9]*\).*/\1/')
python3 - "$REVS" >"$TMP/gaps.txt" <<'EOF'
import sys
r = [int(x) for x in sys.argv[1].split()]
bad = [(a, b) for a, b in zip(r, r[1:]) if b != a + 1]
print("events=%d first=%d last=%d gaps=%s" % (len(r), r[0], r[-1], bad[:5]))
EOF
expect_match "... no change missed or repeated across the restart" "gaps=\[\]" "$(cat "$TMP/gaps.txt")"
echo "# watch: $(cat "$TMP/gaps.txt") (events before the kill: $BEFORE)"
ctl get s1
expect_eq "after the restart a get is OK again" 0 "$RC"
expect_match "... with the record as it was" "owner=node-b pid=22 epoch=2 mod=$REV2 " "$OUT"

# ---- a hung etcd: connections open, nothing answers --------------------------------
kill -STOP "$ETCD_PID"
ctl get s1
kill -CONT "$ETCD_PID"
expect_eq "etcd stopped (SIGSTOP): get is UNAVAILABLE" 4 "$RC"
HUNG_MS=$(field ms "$OUT")
expect_lt "... at the timeout, not later" "$HUNG_MS" $((TIMEOUT + 500))
expect_lt "... and not before it" $((TIMEOUT - 100)) "$HUNG_MS"
echo "# UNAVAILABLE with etcd hung (SIGSTOP): $HUNG_MS ms"

# ---- two endpoints, the first dead ----------------------------------------------
run "$CTL" --timeout "$TIMEOUT" "etcd://127.0.0.1:$DEAD,$EP" "$PREFIX" get s1
expect_eq "first endpoint dead: get fails over and is OK" 0 "$RC"
expect_match "... counted as a fail-over" "failovers=1" "$OUT"
run "$CTL" --timeout "$TIMEOUT" "etcd://127.0.0.1:$DEAD,$EP" "$PREFIX" cas s1 "$REV2" node-c 33 3
expect_eq "... a CAS too (it never reached the dead one)" 0 "$RC"
bg watch2 "$CTL" --timeout "$TIMEOUT" "etcd://127.0.0.1:$DEAD,$EP" "$PREFIX" watch
wait_lines 10 "$TMP/watch2.out" '^WATCH OK' 1 || true
expect_eq "... and a watch is established on the live one" 1 "$(count_lines "$TMP/watch2.out" '^WATCH OK')"
expect_eq "... without telling its caller it broke (one endpoint still answered)" 0 \
    "$(count_lines "$TMP/watch2.out" '^WATCH UNAVAILABLE')"
ectl put "$PREFIX/spaces/fo" '{"v":1,"space":"fo","owner":"n","owner_pid":"1","epoch":1,"in_sync":[]}' >/dev/null
wait_lines 10 "$TMP/watch2.out" '^EVENT OK .*space=fo ' 1 || true
expect_eq "... and sees changes" 1 "$(count_lines "$TMP/watch2.out" '^EVENT OK .*space=fo ')"

# ---- compaction: a watch from a forgotten revision is handed the whole list ------
CUR=$(ectl get "$PREFIX/none" -w json | python3 -c 'import json,sys; print(json.load(sys.stdin)["header"]["revision"])')
ectl compact "$CUR" >/dev/null
bg watch3 "$CTL" --timeout "$TIMEOUT" "$URL" "$PREFIX" watch 2
wait_lines 10 "$TMP/watch3.out" '^RESYNC' 1 || true
NSPACES=$("$CTL" "$URL" "$PREFIX" list | sed -n 's/.* n=\([0-9]*\) .*/\1/p')
expect_match "watch from a compacted revision: RESYNC with every space" "^RESYNC OK rev=$CUR n=$NSPACES " \
    "$(grep '^RESYNC' "$TMP/watch3.out")"
ectl put "$PREFIX/spaces/after" '{"v":1,"space":"after","owner":"n","owner_pid":"1","epoch":1,"in_sync":[]}' >/dev/null
wait_lines 10 "$TMP/watch3.out" '^EVENT OK .*space=after ' 1 || true
expect_eq "... then the changes after it" 1 "$(count_lines "$TMP/watch3.out" '^EVENT OK .*space=after ')"

# ---- malformed answers are BAD, never a crash; a hung endpoint is failed over --------
# A stand-in that answers like etcd's gateway but with broken content, chosen
# by the space asked for; and a port that accepts connections and never
# answers (a hung endpoint). etcd itself cannot be made to answer this way.
FAKE=$((PORT + 3))
HOLE=$((PORT + 4))
cat >"$TMP/fake_etcd.py" <<'PYEOF'
import base64, http.server, json, socket, sys, time
port, hole, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
b64 = lambda s: base64.b64encode(s.encode()).decode()
hole_sock = socket.socket()
hole_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
hole_sock.bind(("127.0.0.1", hole))
hole_sock.listen(64)  # never accepted: connects succeed, nothing answers
def rec(space):
    return json.dumps({"v": 1, "space": space, "owner": "n", "owner_pid": "1", "epoch": 1, "in_sync": []})
def kv(space, mod="3", value=None):
    return {"key": b64(prefix + "/spaces/" + space), "mod_revision": mod,
            "value": b64(rec(space)) if value is None else value}
BODIES = {
    "ok": {"header": {"revision": "3"}, "kvs": [kv("ok")]},
    "notjson": "not json", "array": [], "hdr": {"header": {"revision": "x"}},
    "kvs": {"kvs": {}}, "key": {"kvs": [{"key": "!!!", "mod_revision": "1"}]},
    "other": {"kvs": [kv("zzz")]}, "two": {"kvs": [kv("two"), kv("two")]},
    "rev": {"kvs": [kv("rev", mod="99999999999999999999999")]},
    "val": {"kvs": [kv("val", value="%%%")]}, "neg": {"kvs": [kv("neg", mod="-4")]},
    "txn1": {"succeeded": True}, "txn2": {"succeeded": False}, "txn3": {"succeeded": "yes"},
}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def reply(self, code, body):
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        if self.path == "/v3/watch":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for line in (json.dumps({"result": {"header": {"revision": "2"}, "created": True}}),
                         json.dumps({"result": {"events": [{"kv": kv("ev", value="%%%")}]}}),
                         "garbage{"):
                data = (line + "\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            time.sleep(0.5)
            self.close_connection = True
            return
        space = base64.b64decode(req.get("key", "")).decode(errors="replace").rsplit("/", 1)[-1]
        if space == "e500":
            return self.reply(500, {"error": "boom", "code": 2})
        if space == "e400":
            return self.reply(400, {"error": "bad request", "code": 3})
        self.reply(200, BODIES.get(space, {}))
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PYEOF
bg fake python3 "$TMP/fake_etcd.py" "$FAKE" "$HOLE" "$PREFIX"
wait_for 10 curl -s -o /dev/null -X POST "http://127.0.0.1:$FAKE/v3/kv/range" -d '{}' ||
    { echo "the fake etcd did not start" >&2; exit 1; }
fake() { run "$CTL" --timeout "$TIMEOUT" "etcd://127.0.0.1:$FAKE" "$PREFIX" "$@"; }
fake get ok
expect_eq "the stand-in answers a well-formed record: OK" "0" "$RC"
for sp in notjson array hdr kvs key other two rev val neg e400; do
    fake get "$sp"
    expect_eq "malformed answer '$sp': BAD (exit 5), no crash" 5 "$RC"
done
for sp in txn1 txn2 txn3; do
    fake cas "$sp" 3 n 1 2
    expect_eq "malformed txn answer '$sp': BAD (exit 5), no crash" 5 "$RC"
done
fake get e500
expect_eq "HTTP 500: UNAVAILABLE" 4 "$RC"
bg watch4 "$CTL" --timeout "$TIMEOUT" "etcd://127.0.0.1:$FAKE" "$PREFIX" watch
wait_lines 10 "$TMP/watch4.out" '^WATCH BAD' 1 || true
T_FIRST=$(now_ms)
wait_lines 10 "$TMP/watch4.out" '^WATCH BAD' 4 || true
T_FOURTH=$(now_ms)
expect_match "a watch: an event it cannot read is an EVENT BAD at its revision" \
    "^EVENT BAD rev=3 .*space=ev" "$(grep '^EVENT' "$TMP/watch4.out" | head -1)"
expect_match "... a malformed message is WATCH BAD, and the watch starts again" \
    "^WATCH BAD .*malformed" "$(grep '^WATCH BAD' "$TMP/watch4.out" | head -1)"
expect_eq "... from the revision after the last it delivered (no repeat)" 1 \
    "$(count_lines "$TMP/watch4.out" '^EVENT BAD rev=3 ')"
expect_eq "... without calling the store unavailable" 0 "$(count_lines "$TMP/watch4.out" '^WATCH UNAVAILABLE')"
expect_lt "... backing off between attempts (100+200+400 ms before the 4th)" 500 $((T_FOURTH - T_FIRST))
alive "$BG_PID" && ok "... and the program is still running" || not_ok "... and the program is still running"
run "$CTL" --timeout "$TIMEOUT" "etcd://127.0.0.1:$HOLE,$EP" "$PREFIX" get s1
expect_eq "first endpoint hung: a get fails over and is OK" 0 "$RC"
expect_lt "... after its share of the timeout (~$((TIMEOUT / 2)) ms), not all of it" \
    "$(field ms "$OUT")" $((TIMEOUT - 200))
run "$CTL" --timeout "$TIMEOUT" "etcd://127.0.0.1:$HOLE" "$PREFIX" cas s1 5 n 1 2
expect_eq "a CAS sent to a hung endpoint: UNAVAILABLE (outcome unknown, not resent)" 4 "$RC"

# ---- the watchers stop cleanly on SIGTERM ------------------------------------------
for p in "$WATCH_PID"; do
    kill -TERM "$p"
    wait_exit "$p" 5
    expect_eq "a watcher exits 0 on SIGTERM (no hang in destroy)" 0 "$RC"
done
expect_no_match "no sanitizer or crash report from the watcher" "ERROR: |runtime error|Segmentation" \
    "$(cat "$TMP/watch.log")"

echo "# summary: $BENCH; unavailable after: ${DEAD_MS} ms (killed), ${HUNG_MS} ms (hung, timeout $TIMEOUT)"
finish
