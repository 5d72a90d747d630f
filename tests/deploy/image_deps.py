#!/usr/bin/env python3
"""image_deps.py - keeps deploy/Containerfile's package lists true.

    python3 tests/deploy/image_deps.py CONTAINERFILE BUILD_DIR

Checks, against this (Debian) machine's package database:

  runtime  RUNTIME_LIBS must be exactly the packages owning the shared
           libraries that BUILD_DIR/bin/pmeshd and pmesh load directly
           (ldd resolves each one to a file, `dpkg -S` names its package;
           readelf tells which ones the binaries name themselves). And every
           library ldd lists, direct or not, must be installed by apt along
           with those packages (their Depends, recursively) or be part of
           every Debian image (Essential / Priority: required).
  build    BUILD_PKGS must be exactly the toolchain (build-essential,
           pkg-config), the compiler of the .proto (package of protoc-c), and
           the -dev package of each pkg-config module the Makefile uses; all
           of them must be in scripts/deps.
  context  every source file the compiler read for those binaries (the -MMD
           dependency files) must be under a path the build stage COPYs.

Prints what it found; exits 1 naming every missing or extra package.
Sanitizer runtimes (libasan, libubsan: a SANITIZE build) are not part of the
image and are left out.
"""
import os
import re
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SANITIZER = re.compile(r"^lib(asan|ubsan|lsan|tsan|hwasan)[0-9]*$")


def sh(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def arg_value(text, name):
    """The value of `ARG NAME="..."` in a Containerfile, as a list of words."""
    m = re.search(r'^ARG\s+%s="([^"]*)"' % re.escape(name), text, re.M)
    if not m:
        raise SystemExit("image_deps: no ARG %s=\"...\" in the Containerfile" % name)
    return m.group(1).split()


_OWNER = {}
_ASKED = set()


def own(paths):
    """Learns the Debian package owning each of paths, with one `dpkg -S`
    (each path is asked as given, as its real path, and under the other
    prefix of a merged /usr)."""
    ask = set()
    for path in paths:
        for p in (path, os.path.realpath(path)):
            ask.add(p)
            ask.add(p[4:] if p.startswith("/usr/") else "/usr" + p)
    ask -= _ASKED
    if not ask:
        return
    _ASKED.update(ask)
    r = subprocess.run(["dpkg", "-S"] + sorted(ask), capture_output=True, text=True)
    for line in r.stdout.splitlines():
        m = re.match(r"^([^\s:,]+)(?::\S+)?: (/.*)$", line)
        if m:
            _OWNER[m.group(2)] = m.group(1)


def package_of(path):
    """Debian package owning path, or None (call own() first for speed)."""
    own([path])
    for p in (path, os.path.realpath(path)):
        for q in (p, p[4:] if p.startswith("/usr/") else "/usr" + p):
            if q in _OWNER:
                return _OWNER[q]
    return None


def ldd(binary):
    """{soname: path} of every library the binary loads (ldd)."""
    libs = {}
    for line in sh("ldd", binary).splitlines():
        line = line.strip()
        m = re.match(r"^(\S+)\s+=>\s+(/\S+)", line)
        if m:
            libs[m.group(1)] = m.group(2)
        elif line.startswith("/"):  # the dynamic loader
            p = line.split()[0]
            libs[os.path.basename(p)] = p
        elif "not found" in line:
            raise SystemExit("image_deps: ldd %s: %s" % (binary, line))
    return libs


def needed(binary):
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", sh("readelf", "-d", binary))


def installed_db():
    """{package: (depends [alternatives lists], essential_or_required)}"""
    out = sh("dpkg-query", "-W", "-f=${db:Status-Abbrev}\t${Package}\t${Pre-Depends}, ${Depends}"
             "\t${Essential}\t${Priority}\n")
    db = {}
    for line in out.splitlines():
        status, pkg, deps, essential, priority = line.split("\t")
        if not status.startswith("ii"):
            continue
        alts = []
        for dep in deps.split(","):
            dep = dep.strip()
            if dep:
                alts.append([re.split(r"[\s(:]", a.strip())[0] for a in dep.split("|")])
        db[pkg] = (alts, essential == "yes" or priority == "required")
    return db


def closure(db, roots):
    seen, todo = set(), [p for p in roots if p in db]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        for alts in db[p][0]:
            for a in alts:  # apt takes the first alternative that exists
                if a in db:
                    todo.append(a)
                    break
    return seen


def report(kind, expected, declared, argname):
    missing = sorted(set(expected) - set(declared))
    extra = sorted(set(declared) - set(expected))
    for p in missing:
        print("not ok - %s: %s missing from %s (%s)" % (kind, p, argname, expected[p]))
    for p in extra:
        print("not ok - %s: %s in %s but not needed" % (kind, p, argname))
    if not missing and not extra:
        print("ok - %s: %s = %s" % (kind, argname, " ".join(sorted(declared))))
    return len(missing) + len(extra)


def main(containerfile, build):
    text = open(containerfile).read()
    bad = 0
    bins = [os.path.join(build, "bin", b) for b in ("pmeshd", "pmesh")]
    for b in bins:
        if not os.access(b, os.X_OK):
            raise SystemExit("image_deps: no %s; build first" % b)

    # runtime: direct libraries -> packages; every library covered.
    direct, every = {}, {}
    for b in bins:
        libs = ldd(b)
        own(libs.values())
        for soname, path in libs.items():
            pkg = package_of(path)
            if pkg is None:
                print("not ok - runtime: %s (%s, loaded by %s) belongs to no Debian package" %
                      (soname, path, os.path.basename(b)))
                bad += 1
                continue
            if SANITIZER.match(pkg):
                continue
            every.setdefault(pkg, set()).add(soname)
        for soname in needed(b):
            if soname not in libs:
                continue
            pkg = package_of(libs[soname])
            if pkg and not SANITIZER.match(pkg):
                direct.setdefault(pkg, set()).add("%s needs %s" % (os.path.basename(b), soname))
    declared = arg_value(text, "RUNTIME_LIBS")
    bad += report("runtime", {p: ", ".join(sorted(v)) for p, v in direct.items()}, declared,
                  "RUNTIME_LIBS")
    db = installed_db()
    base = [p for p, (_, req) in db.items() if req]
    have = closure(db, declared + arg_value(text, "RUNTIME_EXTRA") + base)
    uncovered = sorted(p for p in every if p not in have)
    for p in uncovered:
        print("not ok - runtime: %s (%s) is loaded but nothing in RUNTIME_LIBS brings it" %
              (p, ", ".join(sorted(every[p]))))
    bad += len(uncovered)
    if not uncovered:
        print("ok - runtime: all %d packages of the %d libraries ldd lists come with RUNTIME_LIBS"
              % (len(every), sum(len(v) for v in every.values())))

    # build: toolchain + protoc-c + the -dev package of each pkg-config module.
    mk = open(os.path.join(ROOT, "Makefile")).read()
    m = re.search(r"^PKGS\s*:?=\s*(.*)$", mk, re.M)
    modules = m.group(1).split() if m else []
    expected = {"build-essential": "the C toolchain", "pkg-config": "Makefile: pkg-config"}
    protoc = sh("sh", "-c", "command -v protoc-c || true").strip()
    if protoc:
        expected[package_of(protoc) or "?"] = "protoc-c"
    pcs = {mod: os.path.join(sh("pkg-config", "--variable=pcfiledir", mod).strip(), mod + ".pc")
           for mod in modules}
    own(pcs.values())
    for mod, pc in pcs.items():
        expected[package_of(pc) or "?"] = "pkg-config module " + mod
    declared = arg_value(text, "BUILD_PKGS")
    bad += report("build", expected, declared, "BUILD_PKGS")
    deps = open(os.path.join(ROOT, "scripts", "deps")).read()
    m = re.search(r"^PKGS=\((.*?)\)", deps, re.M | re.S)
    listed = set(shlex.split(m.group(1))) if m else set()
    for p in declared:
        if p not in listed:
            print("not ok - build: %s is in BUILD_PKGS but not in scripts/deps" % p)
            bad += 1

    # context: every file the compiler read is COPYed.
    copied = set()
    for m in re.finditer(r"^COPY\s+(?!--from)(.*)$", text, re.M):
        for src in m.group(1).split()[:-1]:
            copied.add(src.rstrip("/"))
    build_rel = os.path.relpath(os.path.abspath(build), ROOT)
    uncopied = set()
    for sub in ("node", "mesh", "gen"):
        d = os.path.join(build, "obj", sub)
        for name in os.listdir(d) if os.path.isdir(d) else []:
            if not name.endswith(".d"):
                continue
            body = open(os.path.join(d, name)).read().replace("\\\n", " ")
            for f in body.replace(":", " ").split():
                if f.startswith("/") or f.endswith(".o") or f.startswith(build_rel + "/"):
                    continue
                if f.split("/")[0] not in copied:
                    uncopied.add(f)
    for f in sorted(uncopied):
        print("not ok - context: the build reads %s, which the build stage does not COPY" % f)
    bad += len(uncopied)
    if not uncopied:
        print("ok - context: every source the build reads is under %s" % " ".join(sorted(copied)))
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    sys.exit(main(sys.argv[1], sys.argv[2]))
