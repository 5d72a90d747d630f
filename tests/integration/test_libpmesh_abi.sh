#!/usr/bin/env bash
# test_libpmesh_abi.sh - libpmesh.so exports exactly the functions of pmesh.h
# (issue 13), and a program built the way a user builds one - pkg-config
# pmesh, pmesh.h only, linked against the shared library - runs against a
# real agent.
#
# 1. nm -D --defined-only of build/lib/libpmesh.so against the function
#    names declared in node/pmesh.h, both ways; internal codecs
#    (pm_wire_*, pm_swim_*, protobuf-c) are not exported.
# 2. A staged install prefix (include/pmesh.h, lib/libpmesh.so*,
#    lib/pkgconfig/pmesh.pc as `make install` writes it): a tiny program
#    compiled with `pkg-config --cflags --libs pmesh` creates, resolves and
#    awaits a promise, and waits for an asynchronous status reply on
#    pm_client_fd as the header documents; it runs on libpmesh.so (ldd says
#    which). A program that calls an internal function does not link.
#
#   BUILD=build tests/integration/test_libpmesh_abi.sh
. "$(dirname "$0")/lib.sh"

LIB=$BUILD/lib/libpmesh.so
PC=$BUILD/lib/pkgconfig/pmesh.pc
HDR=$(dirname "$0")/../../node/pmesh.h
CC=${CC:-cc}
for tool in nm pkg-config "$CC"; do
    if ! command -v "$tool" >/dev/null; then
        echo "# skipped: $tool is not installed"
        FINISHED=1
        echo "0 passed, 0 failed (skipped)"
        exit 0
    fi
done
if [ ! -f "$LIB" ] || [ ! -f "$PC" ]; then
    echo "test_libpmesh_abi.sh: no $LIB or $PC; build first (make BUILD=$BUILD)" >&2
    exit 1
fi

# ================================================== 1. exported symbols

# Function names declared in the header: comments stripped by the
# preprocessor (they mention calls like pm_worker_next(self, 0, ..)).
"$CC" -fpreprocessed -dD -E -P "$HDR" 2>/dev/null |
    grep -oE '\bpm_[a-z0-9_]+[[:space:]]*\(' | sed 's/[[:space:]]*($//' | sort -u >"$TMP/declared"
nm -D --defined-only "$LIB" | awk '$2 != "A" && $2 != "a" {sub(/@.*/, "", $3); print $3}' |
    sort -u >"$TMP/exported"

expect_lt "pmesh.h declares functions (the extraction works)" 30 "$(wc -l <"$TMP/declared")"
MISSING=$(comm -23 "$TMP/declared" "$TMP/exported" | tr '\n' ' ')
EXTRA=$(comm -13 "$TMP/declared" "$TMP/exported" | tr '\n' ' ')
expect_eq "every function of pmesh.h is exported by libpmesh.so" "" "$MISSING"
expect_eq "libpmesh.so exports nothing that pmesh.h does not declare" "" "$EXTRA"
for internal in pm_wire_encode pm_wire_decode pm_wire_rec_encode pmesh__envelope__pack; do
    expect_no_match "... not $internal" "(^|[[:space:]])$internal($|[[:space:]])" \
        "$(tr '\n' ' ' <"$TMP/exported")"
done

# ================================================== 2. built with pkg-config

PREFIX=$TMP/prefix
mkdir -p "$PREFIX/include" "$PREFIX/lib/pkgconfig"
cp "$HDR" "$PREFIX/include/"
cp "$LIB" "$PREFIX/lib/libpmesh.so.0"
ln -s libpmesh.so.0 "$PREFIX/lib/libpmesh.so"
sed -e "s|^prefix=.*|prefix=$PREFIX|" "$PC" >"$PREFIX/lib/pkgconfig/pmesh.pc"
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
run pkg-config --cflags --libs pmesh
expect_eq "pkg-config knows pmesh" 0 "$RC"
FLAGS=$OUT
expect_match "... and points into the prefix" "-I$PREFIX/include.*-L$PREFIX/lib.*-lpmesh" "$FLAGS"

cat >"$TMP/abi.c" <<'EOF'
/* Uses pmesh.h and nothing else of pmesh. */
#include <pmesh.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(what, cond) \
    do { int c_ = (cond); printf("%s - %s\n", c_ ? "ok" : "not ok", what); bad += !c_; } while (0)

int
main(int argc, char **argv)
{
    int bad = 0;
    pm_client_t *c = NULL;
    int err = pm_client_connect(argc > 1 ? argv[1] : NULL, &c);
    CHECK("connect", err == PM_OK);
    if (err)
        return 1;
    CHECK("a session", pm_client_session(c) != 0);
    char *id = NULL;
    CHECK("create", pm_create(c, NULL, &id, NULL) == PM_OK && id);
    CHECK("resolve", pm_resolve(c, id, "v", 1) == PM_OK);
    pm_promise_t *p = NULL;
    CHECK("await resolved v",
          pm_await(c, id, 1000, &p) == PM_OK && p->state == PM_STATE_RESOLVED &&
              p->value_len == 1 && p->value[0] == 'v');
    pm_promise_destroy(&p);
    CHECK("pm_err_name", strcmp(pm_err_name(PM_ERR_UNREACHABLE), "UNREACHABLE") == 0);

    /* An asynchronous status, waited for on the descriptor as pmesh.h says:
     * drain with pm_recv(.., 0, ..) after sending, then wait on the fd. */
    int fd = pm_client_fd(c);
    CHECK("pm_client_fd", fd >= 0);
    CHECK("pm_client_socket", pm_client_socket(c) != NULL);
    uint64_t req = 0;
    CHECK("pm_send_status", pm_send_status(c, &req) == PM_OK);
    int got = 0;
    for (int rounds = 0; !got && rounds < 50; rounds++) {
        pm_result_t *r = NULL;
        while (!got && pm_recv(c, 0, &r) == PM_OK) {
            got = r->req_id == req && r->op == PM_OP_STATUS && !r->err && r->json &&
                  strstr(r->json, "\"node\"") != NULL;
            pm_result_destroy(&r);
        }
        if (!got) {
            struct pollfd pf = {.fd = fd, .events = POLLIN};
            poll(&pf, 1, 100);
        }
    }
    CHECK("status reply through the descriptor", got);
    pm_promise_list_t *l = NULL;
    CHECK("list", pm_list(c, NULL, &l) == PM_OK && l->count >= 1);
    pm_promise_list_destroy(&l);
    free(id);
    pm_client_destroy(&c);
    return bad ? 1 : 0;
}
EOF
# shellcheck disable=SC2086 # FLAGS is a list of flags
# A sanitizer build's library needs its runtime first in the program too.
SAN=()
[ -n "${SANITIZE:-}" ] && SAN=(-fsanitize="$SANITIZE")
run "$CC" -std=c11 -Wall -Wextra -Werror "${SAN[@]}" -o "$TMP/abi" "$TMP/abi.c" $FLAGS
expect_eq "a program using only pmesh.h builds with pkg-config flags" 0 "$RC"
if [ "$RC" != 0 ]; then
    echo "# $ERR"
fi
expect_match "... and links the shared library" "libpmesh\.so\.0 => $PREFIX/lib/libpmesh\.so\.0" \
    "$(LD_LIBRARY_PATH=$PREFIX/lib ldd "$TMP/abi" 2>&1)"

start_agent 1
run env LD_LIBRARY_PATH="$PREFIX/lib" "$TMP/abi" "$AGENT_SOCK"
expect_eq "... and runs against a real agent" 0 "$RC"
if [ "$RC" != 0 ]; then
    echo "$OUT" | sed 's/^/#   /'
fi

cat >"$TMP/internal.c" <<'EOF'
#include <pmesh.h>
#include <stddef.h>
#include <stdint.h>
uint8_t *pm_wire_encode(const void *msg, size_t *len); /* internal to libpmesh */
int main(void) { size_t n; return pm_wire_encode(NULL, &n) != NULL; }
EOF
# shellcheck disable=SC2086
run "$CC" -o "$TMP/internal" "$TMP/internal.c" $FLAGS
expect_ne "a program calling an internal function (pm_wire_encode) does not link" 0 "$RC"
expect_match "... for want of the symbol" "undefined reference to .pm_wire_encode" "$ERR"

finish
