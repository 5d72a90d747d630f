# coord_lib.sh - helpers of the tests that run against a real etcd
# (test_coord_*.sh). Source it after lib.sh or mesh_lib.sh; the test defines
# `ectl ARGS...` (etcdctl against its store, with its TLS or namespace) and
# PREFIX (the mesh's key prefix) before it calls record or rec_field.

# coord_need_etcd: the test is skipped (exit 0, said so) without etcd.
coord_need_etcd() {
    if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
        echo "# SKIP: etcd or etcdctl not installed (scripts/deps installs etcd-server etcd-client)"
        FINISHED=1
        echo "0 passed, 0 failed (skipped)"
        exit 0
    fi
}
# check_fn NAME CMD...: ok if CMD (a shell function too) succeeds.
check_fn() {
    local name=$1
    shift
    if "$@"; then ok "$name"; else not_ok "$name" "command: $*" "last stderr: ${ERR:-}"; fi
}
# record SPACE: the store's record of SPACE (JSON), or nothing.
record() { ectl get --print-value-only "$PREFIX/spaces/$1" 2>/dev/null; }
# rec_field SPACE FIELD: one field of it ("<bad json>" without a record).
rec_field() { json_get "$(record "$1")" "$2"; }
# _ready K: nK's coordinator has read the store.
_ready() { [ "$(mstat "$1" coordination.ready)" = true ]; }
# primary K: nK's current primary (the space it owns at epoch 1).
primary() {
    "$PMESH" --socket "${MESH_SOCK[$1]}" status 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
print([s["space"] for s in d["coordination"]["spaces"] if s["ours"] and s["epoch"] == 1][0])' 2>/dev/null
}
# create_ok K [TRIES [TIMEOUT]]: creates a promise through nK, retrying every
# 200 ms while it is refused (UNAVAILABLE while the store records a change);
# OUT = its id.
create_ok() {
    local i
    for i in $(seq "${2:-100}"); do
        pm "$1" create --timeout "${3:-100m}"
        [ "$RC" = 0 ] && return 0
        sleep 0.2
    done
    return 1
}
# create_many K N: N creates through nK (create_ok each); IDS = the ids made,
# fewer than N if one was refused for good.
create_many() {
    local i
    IDS=()
    for i in $(seq "$2"); do
        create_ok "$1" || break
        IDS+=("$OUT")
    done
}
# coord_mesh_dir: a new mesh directory (MESH_DIR, its empty pids file) and a
# free port (MESH_PORT) for agents the test starts itself.
coord_mesh_dir() {
    MESH_COUNT=$((MESH_COUNT + 1))
    MESH_DIR=$TMP/mesh-$MESH_COUNT
    mkdir -p "$MESH_DIR"
    : >"$MESH_DIR/pids"
    MESH_PORT=$(free_ports 1)
}
