# shellcheck shell=bash
# lib.sh - helpers of the deploy suites, on top of tests/integration/lib.sh
# (assertions ok/not_ok/expect_*, run, bg, $TMP, cleanup of started PIDs).
#
#   . "$(dirname "$0")/lib.sh"
#   render deploy/overlays/prod "$TMP/prod.yaml"
#   expect_fixture NAME RC OUTPUT_FILE FIXTURE   # exit 1 and every "# expect:" line
#   finish

SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$SRC_DIR"
. "$SRC_DIR/tests/integration/lib.sh"
# shellcheck disable=SC2034 # used by the suites that source this file
DEPLOY_TESTS=$SRC_DIR/tests/deploy

# What the suites need besides the build: fail loudly, never skip.
deploy_need_tools() {
    local missing=()
    command -v node >/dev/null 2>&1 || missing+=("node (Node.js >= 16)")
    command -v kubectl >/dev/null 2>&1 || command -v kustomize >/dev/null 2>&1 ||
        missing+=("kubectl (or kustomize)")
    command -v python3 >/dev/null 2>&1 || missing+=("python3")
    if [ ${#missing[@]} -gt 0 ]; then
        echo "deploy-check: missing ${missing[*]}: install them (see README, Running on Kubernetes)" >&2
        exit 1
    fi
    if [ ! -d "$SRC_DIR/deploy/validate/node_modules/kubernetes-models" ]; then
        echo "deploy-check: the validator's npm packages are not installed: run make deps" \
            "(npm ci --prefix deploy/validate)" >&2
        exit 1
    fi
}
deploy_need_tools

# render KUSTOMIZATION_DIR OUT: kubectl kustomize (or kustomize build) into OUT.
render() {
    if command -v kubectl >/dev/null 2>&1; then
        kubectl kustomize "$1" >"$2" 2>"$2.err"
    else
        kustomize build "$1" >"$2" 2>"$2.err"
    fi
}

# expect_fixture NAME RC OUT FIXTURE: ok if RC is 1 and OUT has every
# "# expect: TEXT" line of FIXTURE (the failure happened for its reason).
expect_fixture() {
    local name=$1 rc=$2 out=$3 fixture=$4 line missing=()
    while IFS= read -r line; do
        grep -qF -- "$line" "$out" || missing+=("$line")
    done < <(sed -n 's/^# expect: //p' "$fixture")
    if [ "$rc" = 1 ] && [ ${#missing[@]} -eq 0 ]; then
        ok "$name"
    else
        not_ok "$name" "exit $rc (want 1)" "${missing[@]/#/not said: }" \
            "output: $(head -c 1500 "$out")"
    fi
}
