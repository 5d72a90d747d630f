#!/usr/bin/env bash
# test_sdk_python.sh - the Python SDK (sdk/python): installs it the way the
# README says into a fresh venv (Debian's pyzmq, protobuf and setuptools
# from the system site packages; protoc runs in the build), then runs its
# pytest suite against real agents (pmeshd of $BUILD) with the installed
# package, and the Fission Python example's tests.
. "$(dirname "$0")/lib.sh"
SRC_DIR=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3 # Debian's interpreter: its packages are the ones installed

for mod in zmq google.protobuf pytest setuptools venv; do
    if ! "$PY" -c "import $mod" 2>/dev/null; then
        echo "# skipped: $PY has no module $mod (run make deps)"
        not_ok "python module $mod present"
        finish
    fi
done
command -v protoc >/dev/null || { not_ok "protoc present (make deps)"; finish; }

# The exact install command of sdk/python/README.md, from the repository root.
VENV=$TMP/venv
run "$PY" -m venv --system-site-packages "$VENV"
expect_eq "venv created" 0 "$RC"
(cd "$SRC_DIR" && timeout 120 "$VENV/bin/pip" install --no-deps --no-build-isolation ./sdk/python) \
    >"$TMP/pip.log" 2>&1 && RC=0 || RC=$?
expect_eq "pip install ./sdk/python into the venv" 0 "$RC"
[ "$RC" = 0 ] || cat "$TMP/pip.log"
# The package works from a directory where the source tree is not importable.
run sh -c "cd '$TMP' && '$VENV/bin/python' -c 'import pmesh, pmesh.aio, pmesh._proto.pmesh_pb2; print(pmesh.__file__)'"
expect_match "installed package imports (generated code included)" "$VENV/.*/site-packages/pmesh/__init__.py" "$OUT"
expect_eq "generated code is not in the source tree" "" "$(git -C "$SRC_DIR" ls-files 'sdk/python/*_pb2.py')"

# The suite: pytest from Debian, the package from the venv.
PYTEST_OUT=$TMP/pytest.out
(cd "$TMP" && PMESH_BIN=$BIN PMESH_EXPECT_INSTALLED=1 PYTHONDONTWRITEBYTECODE=1 \
    timeout -k 5 600 "$VENV/bin/python" -m pytest -p no:cacheprovider -rs -v \
    "$SRC_DIR/sdk/python/tests") \
    >"$PYTEST_OUT" 2>&1 && RC=0 || RC=$?
# One line per test case, as ok / not ok.
while read -r line; do
    case $line in
    *" PASSED"*) ok "pytest ${line%% PASSED*}" ;;
    *" FAILED"* | *" ERROR"*) not_ok "pytest ${line%% *}" ;;
    *" SKIPPED"*) echo "# skipped: $line" ;;
    esac
done < <(grep -E '::.* (PASSED|FAILED|ERROR|SKIPPED)' "$PYTEST_OUT" |
    sed -e 's/ *\[ *[0-9]*%\]$//' -e 's|^.*sdk/python/tests/||')
expect_eq "pytest exits 0" 0 "$RC"
if [ "$RC" != 0 ]; then
    sed -n '/= FAILURES =/,$p' "$PYTEST_OUT" | tail -n 80
    tail -n 5 "$PYTEST_OUT"
fi
finish
