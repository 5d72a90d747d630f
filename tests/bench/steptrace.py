#!/usr/bin/env python3
"""steptrace.py - where a sequential chain step's time goes (bench/CHAIN-STEP.md).

  steptrace.py DIR [--suffix .] [--steps 10] [--concurrent]
      joins the marks a PM_STEPTRACE build (node/steptrace.h) wrote to DIR
      and prints the per-hop table, p50 and mean in microseconds
      (--concurrent: the chains ran at once, as run --inflight N > 1).
  steptrace.py run [--build build/trace] [--chains 300] [--steps 10]
                   [--fsync batch|never] [--replicas 2] [--inflight 1] [--perf]
                   [--no-chain-forward] [--keep]
      runs the set-up of `scripts/bench-mesh --chain-step` from a trace build
      (three agents on 127.0.0.1-3, CURVE, a WAL each; a pmesh_chain worker,
      concurrency 32, on n2 and n3; the caller on n1), 50 untraced warm-up
      chains, then --chains sequential chains (peers_chain --inflight 1)
      with PM_STEPTRACE_DIR set, stops every process it started by its pid
      (the marks are written at exit) and joins the marks. Also prints the
      agents' and workers' CPU per step (/proc). --inflight N > 1: chains
      run N at once, each still joined by its own values (every chain's
      head value is its own), so the table shows where a loaded chain's
      time goes; only the split of the end's durability wait is left out
      (it reads the journal's keyless release marks, which concurrent
      chains share). --perf records the three
      agents with `perf record -g` during the measured run (kept with
      --keep: perf report -i DIR/perf.PID.data). --no-chain-forward runs
      the agents with --chain-forward=false (every step through the owner:
      the old join).

A step's input value v keys the marks before its function runs, its output
v + suffix the marks after it (and the next step's). Only chains whose
driver's start was traced (a "d_start" mark) are joined, so a warm-up run
without PM_STEPTRACE_DIR does not count.

Two paths are told apart by the marks present:
  * chain forwarding (since 55fdc03/c029db6): the owner n1 places the first
    step on a member with the continuations chained after it; the worker's
    library (node/client.c) starts each next step itself on its own result
    ("l_chain") and reports it in the Result; the member's agent takes it as
    held by that worker ("wk_adopt") and relays the result to n1, which
    learns the started step's input ("chain_started"), applies the result
    and adopts the step ("adopt_chained"). Per step, the path is inside the
    worker; the relay to n1 runs beside it.
  * the path before: every step goes n1 -> member -> worker -> member -> n1.
"""
import bisect, collections, glob, json, os, signal, socket, statistics, subprocess, sys, tempfile, time


# Keyless marks (the journal's holds and releases, node/journal.c) by the
# process that made them: pid -> point -> sorted t_ns; and the pid of each
# keyed point's process (the last seen).
KEYLESS = collections.defaultdict(lambda: collections.defaultdict(list))
PID_OF = {}


def load(d):
    """key -> point -> earliest t_ns (a point may fire twice for one key,
    e.g. wk_invoke on a started step the worker's agent already holds)."""
    marks = collections.defaultdict(dict)
    KEYLESS.clear()
    PID_OF.clear()
    for f in glob.glob(os.path.join(d, "*")):
        pid = os.path.basename(f).split(".")[0]
        for line in open(f, errors="replace"):
            parts = line.split()
            if len(parts) == 2:
                KEYLESS[pid][parts[0]].append(int(parts[1]))
                continue
            if len(parts) != 3:
                continue
            PID_OF[parts[0]] = pid
            point, t, key = parts[0], int(parts[1]), parts[2]
            m = marks[key]
            if point not in m or t < m[point]:
                m[point] = t
    for pts in KEYLESS.values():
        for v in pts.values():
            v.sort()
    return marks


def last_before(pid, point, t):
    """The last keyless mark `point` of process pid at or before t, or None."""
    v = KEYLESS.get(pid, {}).get(point, [])
    i = bisect.bisect_right(v, t)
    return v[i - 1] if i else None


def stats(v):
    return (statistics.median(v), statistics.mean(v), len(v)) if v else None


def show(title, rows):
    """rows: (name, list of us) or (None, heading)."""
    print(title)
    for name, v in rows:
        if name is None:
            print("  " + v)
            continue
        s = stats(v)
        if s:
            print("    %-66s p50 %7.1f  mean %7.1f  (n %d)" % (name, s[0], s[1], s[2]))
        else:
            print("    %-66s -" % name)


def d(m, a, b):
    """b - a in us, or None."""
    return (m[b] - m[a]) / 1000.0 if a in m and b in m else None


def join_forwarded(marks, bases, suffix, steps, concurrent=False):
    """Chain forwarding: per step k (input in_k, output out_k = in_k+suffix).
    concurrent: chains ran at once (no split of the end's durability wait)."""
    H = collections.OrderedDict()

    def add(name, v):
        H.setdefault(name, [])
        if v is not None:
            H[name].append(v)

    path, lag, whole, start, end, worker_all = [], [], [], [], [], []
    for b in bases:
        keys = [b + suffix * k for k in range(steps + 1)]  # keys[k-1] = in_k, keys[k] = out_k
        ms = [marks.get(k, {}) for k in keys]
        first, last = ms[0], ms[steps]
        # chain start: the driver's resolve -> the worker runs step 1
        start.append(d(first, "d_start", "w_got"))
        add("start: driver resolve -> n1 settles the head, fires the then, places", d(first, "d_start", "place"))
        add("start: n1 places step 1, records the %d chained after it" % (steps - 1), d(first, "place", "inv_send"))
        add("start: n1 INVOKE (with the chained steps) encoded, sent (CURVE)", d(first, "inv_send", "inv_sent"))
        add("start: mesh n1 -> n2 (tcp)", d(first, "inv_sent", "wk_invoke"))
        add("start: n2 queues it, dispatch", d(first, "wk_invoke", "wk_dispatch"))
        add("start: n2 INVOKE to the worker encoded, sent", d(first, "wk_dispatch", "wk_sent"))
        add("start: ipc n2 -> worker (libpmesh decode, queued)", d(first, "wk_sent", "l_invoke"))
        add("start: worker picks it up (pm_worker_next)", d(first, "l_invoke", "w_got"))
        for k in range(1, steps + 1):
            mi, mo = ms[k - 1], ms[k]
            tail = k == steps
            # on the path, inside the worker process
            if "w_got" in mi and "l_answer" in mo:
                add("step: the function (pmesh_chain appends its suffix)", (mo["l_answer"] - mi["w_got"]) / 1000.0)
            if not tail:
                add("step: libpmesh starts the next step on the result (queued)", d(mo, "l_answer", "l_chain"))
                first_send = "step: RESULT (with the started step) encoded, sent to n2: step 1"
                later_send = "step: RESULT (with the started step) encoded, sent: steps 2-%d" % (steps - 1)
                add(first_send if k == 1 else later_send, d(mo, "l_chain", "w_sent"))
                H.setdefault(later_send, [])
                add("step: pm_worker_next returns the started step", d(mo, "w_sent", "w_got"))
                if "w_got" in mi and "w_got" in mo:
                    path.append((mo["w_got"] - mi["w_got"]) / 1000.0)
                # off the path: the relay to the owner
                add("relay: ipc worker -> n2, decode", d(mo, "w_sent", "wk_result"))
                add("relay: n2 takes the started step as held by the worker", d(mo, "wk_result", "wk_adopt"))
                add("relay: n2 relays the result (Result + started step) to n1", d(mo, "wk_adopt", "settle_send"))
                add("relay: mesh n2 -> n1 (CURVE, tcp)", d(mo, "settle_send", "result_in"))
                add("relay: n1 learns the started step's input", d(mo, "result_in", "chain_started"))
                add("relay: n1 finds the placement (same space: applied at once, R6)", d(mo, "chain_started", "result_apply"))
                add("relay: n1 settles (store, WAL record), the then fires, adopts", d(mo, "result_apply", "adopt_chained"))
                lag.append(d(mo, "l_chain", "adopt_chained"))
        # chain end
        add("end: last RESULT encoded, sent", d(last, "l_answer", "w_sent"))
        add("end: ipc worker -> n2, decode", d(last, "w_sent", "wk_result"))
        add("end: n2 relays the result to n1", d(last, "wk_result", "settle_send"))
        add("end: mesh n2 -> n1", d(last, "settle_send", "result_in"))
        add("end: n1 finds the placement", d(last, "result_in", "result_apply"))
        add("end: n1 settles; held until durable on n1 and backup; REPLY", d(last, "result_apply", "d_end"))
        # (the await's reply: the last the owner's journal released before the
        # await returned; the replies held with it go in the same release)
        owner = PID_OF.get("result_apply")
        rel = last_before(owner, "j_release", last["d_end"]) if "d_end" in last and not concurrent else None
        if rel is not None and "result_apply" in last and rel >= last["result_apply"]:
            add("end:   of which the settle -> the reply released (durable)", (rel - last["result_apply"]) / 1000.0)
            add("end:   of which the REPLY n1 -> driver (ipc, libpmesh)", (last["d_end"] - rel) / 1000.0)
        end.append(d(last, "w_sent", "d_end"))
        worker_all.append((last["w_sent"] - first["w_got"]) / 1000.0
                          if "w_sent" in last and "w_got" in first else None)
        whole.append((last["d_end"] - first["d_start"]) / 1000.0 if "d_end" in last and "d_start" in first else None)
    clean = lambda v: [x for x in v if x is not None]
    print("chains joined: %d (chain forwarding: steps started by the worker's library)" % len(bases))
    show("per hop, us (p50, mean):", [(n, v) for n, v in H.items()])
    show("summary, us:", [
        ("one step on the path (worker takes step k -> takes step k+1)", path),
        ("the owner trails: worker starts step k+1 -> n1 adopts it", clean(lag)),
        ("chain start: driver resolve -> worker runs step 1", clean(start)),
        ("the steps: worker takes step 1 -> sends step %d's result" % steps, clean(worker_all)),
        ("chain end: last result sent -> the await returns", clean(end)),
        ("whole chain: driver resolve -> await returns", clean(whole)),
    ])


OLD_HOPS = [
    ("n1: settle -> then fires -> placed, INVOKE encoded+sent", "place", "inv_sent", "in"),
    ("mesh n1 -> n2 (CURVE, zmq I/O threads, tcp)", "inv_sent", "wk_invoke", "in"),
    ("n2: queue, dispatch, INVOKE to the worker", "wk_invoke", "wk_sent", "in"),
    ("ipc n2 -> worker (libpmesh decode)", "wk_sent", "w_got", "in"),
    ("worker: the function + RESULT encode/send", "w_got", "w_sent", "cross"),
    ("ipc worker -> n2 (decode)", "w_sent", "wk_result", "out"),
    ("n2: result -> SETTLE relayed", "wk_result", "settle_send", "out"),
    ("mesh n2 -> n1 + n1 settles (store, WAL record, replicate)", "settle_send", "place", "out"),
]


def base_of(key, suffix):
    while suffix and key.endswith(suffix):
        key = key[:-len(suffix)]
    return key


def join_old(marks, bases, suffix):
    """The path before chain forwarding: every step through the owner."""
    rows = collections.defaultdict(list)
    total = []
    bases = set(bases)
    for key, m in marks.items():
        if "place" not in m or base_of(key, suffix) not in bases:
            continue
        mo = marks.get(key + suffix, {})
        vals = []
        for name, a, b, kind in OLD_HOPS:
            ta = (m if kind in ("in", "cross") else mo).get(a)
            tb = (m if kind == "in" else mo).get(b)
            if ta is None or tb is None:
                vals = None
                break
            vals.append((name, (tb - ta) / 1000.0))
        if vals:
            for name, v in vals:
                rows[name].append(v)
            total.append((mo["place"] - m["place"]) / 1000.0)
    head = [(m["place"] - m["d_start"]) / 1000.0 for m in marks.values() if "d_start" in m and "place" in m]
    tail = [(m["d_end"] - m["settle_send"]) / 1000.0 for m in marks.values() if "d_end" in m and "settle_send" in m]
    print("steps with every mark: %d (every step through the owner)" % len(total))
    show("per hop, us (p50, mean):", [(n, rows[n]) for n, _, _, _ in OLD_HOPS] + [
        ("one step, place -> next place", total),
        ("chain start: driver resolve -> head's then placed", head),
        ("chain end: last SETTLE relayed -> await returns (durable)", tail)])


def join(d, suffix=".", steps=10, concurrent=False):
    marks = load(d)
    bases = sorted(k for k, m in marks.items() if "d_start" in m)
    forwarded = any("l_chain" in m for m in marks.values())
    if forwarded:
        join_forwarded(marks, bases, suffix, steps, concurrent)
    else:
        join_old(marks, bases, suffix)


# ---- run: the bench-mesh --chain-step set-up from a trace build ------------------------

def free_port():
    for _ in range(100):
        p = 20000 + (int.from_bytes(os.urandom(2), "little") % 3900) * 10
        ok = True
        for i in (1, 2, 3):
            s = socket.socket()
            try:
                s.bind(("127.0.0.%d" % i, p))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return p
    sys.exit("steptrace: no free port")


def cpu_ms(procs):
    """utime + stime of the processes, in ms."""
    t = 0
    for p in procs:
        f = open("/proc/%d/stat" % p.pid).read().rsplit(")", 1)[1].split()
        t += int(f[11]) + int(f[12])
    return t * 1000.0 / os.sysconf("SC_CLK_TCK")


def run(argv):
    opt = {"--build": "build/trace", "--chains": "300", "--steps": "10", "--fsync": "batch",
           "--replicas": "2", "--inflight": "1"}
    keep = "--keep" in argv
    for i, a in enumerate(argv):
        if a in opt:
            opt[a] = argv[i + 1]
    b = os.path.join(opt["--build"], "bin")
    for x in ("pmeshd", "pmesh", "pmesh_chain", "peers_chain", "mesh_bench"):
        if not os.access(os.path.join(b, x), os.X_OK):
            sys.exit("steptrace: %s/%s is missing; run: make all BUILD=%s (a trace build: "
                     "CFLAGS='-O2 -g -DPM_STEPTRACE')" % (b, x, opt["--build"]))
    tmp = tempfile.mkdtemp(prefix="pmst.")
    marks = os.path.join(tmp, "marks")
    os.mkdir(marks)
    env_t = dict(os.environ, PM_STEPTRACE_DIR=marks)
    env_n = {k: v for k, v in os.environ.items() if k != "PM_STEPTRACE_DIR"}
    procs = []  # (name, Popen): stopped by pid, workers first
    perf = []  # perf record processes: stopped by pid (SIGINT writes their data)

    def sock(i):
        return os.path.join(tmp, "n%d.sock" % i)

    def stop_perf():
        for p in perf:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        perf.clear()

    def stop_all():
        for name, p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print("steptrace: %s (pid %d) ignored SIGTERM; killed" % (name, p.pid), file=sys.stderr)
                p.kill()
                p.wait()
        procs.clear()

    try:
        port = free_port()
        h = subprocess.run([b + "/pmeshd", "--help"], capture_output=True, text=True)
        helptext = h.stdout + h.stderr
        sec = []
        if "--mesh-key-dir" in helptext:
            subprocess.run([b + "/pmeshd", "--keygen", tmp + "/keys"], check=True, capture_output=True)
            sec = ["--mesh-key-dir", tmp + "/keys"]
        coord = ["--unsafe-no-coordination"] if "--unsafe-no-coordination" in helptext else []
        fwd = ["--chain-forward=false"] if "--no-chain-forward" in argv else []
        for i in (1, 2, 3):
            os.mkdir("%s/n%d.data" % (tmp, i))
            seed = [] if i == 1 else ["--seed", "tcp://127.0.0.1:%d" % port]
            log = open("%s/n%d.log" % (tmp, i), "w")
            procs.append(("n%d" % i, subprocess.Popen(
                [b + "/pmeshd", "--node", "n%d" % i, "--socket", sock(i), "--bind",
                 "tcp://127.0.0.%d:%d" % (i, port)] + seed + sec + coord +
                ["--data-dir", "%s/n%d.data" % (tmp, i), "--fsync", opt["--fsync"],
                 "--replicas", opt["--replicas"], "--log-level", "warn"] + fwd,
                stdout=log, stderr=subprocess.STDOUT, env=env_t)))
        subprocess.run([b + "/mesh_bench", "converge", "--expect", "3", "--timeout-ms", "30000"] +
                       [sock(i) for i in (1, 2, 3)], check=True, stdout=subprocess.DEVNULL)
        for i in (2, 3):
            log = open("%s/worker%d.log" % (tmp, i), "w")
            procs.append(("worker%d" % i, subprocess.Popen(
                [b + "/pmesh_chain", "worker", "--socket", sock(i), "--function", "step",
                 "--concurrency", "32", "--append", "."], stdout=log, stderr=subprocess.STDOUT,
                env=env_t)))
        t0 = time.monotonic()
        while True:  # until n1 places step on both n2 and n3 (gossip metadata)
            r = subprocess.run([b + "/pmesh", "--socket", sock(1), "members", "--json"],
                               capture_output=True, text=True)
            try:
                ms = json.loads(r.stdout)
                s = {x["node"] for x in ms if x["state"] == "alive" and
                     any(f["name"] == "step" for f in x["functions"])}
                if {"n2", "n3"} <= s:
                    break
            except ValueError:
                pass
            if time.monotonic() - t0 > 30:
                sys.exit("steptrace: n1 does not see step on n2 and n3")
            time.sleep(0.1)
        inflight = opt["--inflight"]
        pc = [b + "/peers_chain", "--socket", sock(1), "--function", "step", "--steps", opt["--steps"],
              "--inflight", inflight, "--suffix", "."]
        subprocess.run(pc + ["--count", "50"], check=True, stdout=subprocess.DEVNULL, env=env_n)
        if inflight != "1":
            subprocess.run(pc + ["--count", "500"], check=True, stdout=subprocess.DEVNULL, env=env_n)
        agents = [p for n, p in procs if n.startswith("n")]
        workers = [p for n, p in procs if n.startswith("worker")]
        if "--perf" in argv:  # the agents, for the measured run (perf record -g -p PID)
            for p in agents:
                perf.append(subprocess.Popen(["perf", "record", "-g", "-q", "-o",
                                              "%s/perf.%d.data" % (tmp, p.pid), "-p", str(p.pid)],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            t0 = time.monotonic()  # until each perf has attached (its data file exists)
            while not all(os.path.exists("%s/perf.%d.data" % (tmp, p.pid)) for p in agents):
                if time.monotonic() - t0 > 20:
                    sys.exit("steptrace: perf record did not start")
                time.sleep(0.05)
        load0 = open("/proc/loadavg").read().split()[:3]
        c0, w0 = cpu_ms(agents), cpu_ms(workers)
        out = subprocess.run(pc + ["--count", opt["--chains"]], check=True, capture_output=True,
                             text=True, env=env_t).stdout.strip()
        c1, w1 = cpu_ms(agents), cpu_ms(workers)
        load1 = open("/proc/loadavg").read().split()[:3]
        stop_perf()
        stop_all()
        n_steps = int(opt["--chains"]) * int(opt["--steps"])
        print("steptrace run: %s, fsync %s, replicas %s, %s %s-step chains, %s in flight%s; load %s -> %s" %
              (opt["--build"], opt["--fsync"], opt["--replicas"], opt["--chains"], opt["--steps"],
               inflight, ", --chain-forward=false" if fwd else "", " ".join(load0), " ".join(load1)))
        print("peers_chain: " + out.splitlines()[-1] if out else "peers_chain: (no output)")
        print("CPU per step: agents (n1+n2+n3) %.0f us, workers %.0f us" %
              ((c1 - c0) * 1000.0 / n_steps, (w1 - w0) * 1000.0 / n_steps))
        join(marks, ".", int(opt["--steps"]), inflight != "1")
        for i, p in enumerate(agents):
            f = "%s/perf.%d.data" % (tmp, p.pid)
            if not os.path.exists(f):
                continue
            print("perf n%d (pid %d): %s" % (i + 1, p.pid, f if keep else "(--keep keeps it)"))
            r = subprocess.run(["perf", "report", "-i", f, "--no-children", "--sort", "dso",
                                "--stdio", "-g", "none"], capture_output=True, text=True)
            for line in [x for x in r.stdout.splitlines() if x.strip() and not x.startswith("#")][:8]:
                print("    " + line.strip())
    except (subprocess.CalledProcessError, SystemExit):
        for f in sorted(glob.glob(os.path.join(tmp, "*.log"))):
            tail = open(f, errors="replace").read().splitlines()[-5:]
            print("steptrace: %s:\n  %s" % (os.path.basename(f), "\n  ".join(tail)), file=sys.stderr)
        raise
    finally:
        stop_perf()
        stop_all()
        if keep:
            print("steptrace: kept " + tmp, file=sys.stderr)
        else:
            subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) > 1 else 64)
    if sys.argv[1] == "run":
        run(sys.argv[2:])
    else:
        suffix = sys.argv[sys.argv.index("--suffix") + 1] if "--suffix" in sys.argv else "."
        steps = int(sys.argv[sys.argv.index("--steps") + 1]) if "--steps" in sys.argv else 10
        join(sys.argv[1], suffix, steps, "--concurrent" in sys.argv)
