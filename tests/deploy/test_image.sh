#!/usr/bin/env bash
# test_image.sh - deploy/Containerfile stays correct without building it:
# its runtime package list is what ldd + dpkg -S say the binaries load, its
# build package list is what the Makefile's pkg-config modules need (and in
# scripts/deps), its build stage COPYs every source the compiler read
# (tests/deploy/image_deps.py). Doctored copies must be refused, naming the
# package or file. And `make image` without a working container engine says
# so and fails.
. "$(dirname "$0")/lib.sh"

CF=$SRC_DIR/deploy/Containerfile
run python3 "$DEPLOY_TESTS/image_deps.py" "$CF" "$BUILD"
expect_eq "Containerfile: package lists and build context match this build" 0 "$RC"
printf '%s\n' "$OUT" | sed 's/^/#   /'

# A runtime library dropped and a needless one added.
sed -e '/^ARG RUNTIME_LIBS=/s/ libsodium23//' -e '/^ARG RUNTIME_LIBS=/s/"$/ libfoo1"/' "$CF" >"$TMP/cf1"
run python3 "$DEPLOY_TESTS/image_deps.py" "$TMP/cf1" "$BUILD"
expect_eq "RUNTIME_LIBS without libsodium23: refused" 1 "$RC"
expect_match "... naming it as missing (and who needs it)" \
    "libsodium23 missing from RUNTIME_LIBS \((pmesh needs libsodium[.]so[.0-9]*, )?pmeshd needs libsodium[.]so" "$OUT"
expect_match "... and libfoo1 as extra" "libfoo1 in RUNTIME_LIBS but not needed" "$OUT"

# A -dev package dropped from the build stage.
sed -e '/^ARG BUILD_PKGS=/s/ libmicrohttpd-dev//' "$CF" >"$TMP/cf2"
run python3 "$DEPLOY_TESTS/image_deps.py" "$TMP/cf2" "$BUILD"
expect_eq "BUILD_PKGS without libmicrohttpd-dev: refused" 1 "$RC"
expect_match "... naming it" "libmicrohttpd-dev missing from BUILD_PKGS \(pkg-config module libmicrohttpd\)" "$OUT"

# A source directory not copied into the build stage.
grep -v '^COPY mesh/ mesh/$' "$CF" >"$TMP/cf3"
run python3 "$DEPLOY_TESTS/image_deps.py" "$TMP/cf3" "$BUILD"
expect_eq "build stage without COPY mesh/: refused" 1 "$RC"
expect_match "... naming a file it needs" "the build reads mesh/[a-z_]+\.[ch], which the build stage does not COPY" "$OUT"

# make image with no engine: a clear message and a failure, not a silent pass.
run env CONTAINER_ENGINE=no-such-engine "$SRC_DIR/deploy/build-image" pmesh:test
expect_eq "build-image without a container engine exits 69" 69 "$RC"
expect_match "... and says why" "no container engine" "$ERR"

finish
