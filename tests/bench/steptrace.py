#!/usr/bin/env python3
"""steptrace.py DIR [--suffix .] - joins the marks of a PM_STEPTRACE build
(node/steptrace.h) into where a sequential chain step's time goes.

A step's input value v keys the marks before the function runs, its output
v + suffix the marks after it (and the next step's "place"). Prints the p50
of each hop over all steps that have every mark, in microseconds."""
import collections, glob, os, statistics, sys

d = sys.argv[1]
suffix = sys.argv[sys.argv.index("--suffix") + 1] if "--suffix" in sys.argv else "."
marks = collections.defaultdict(dict)  # key -> point -> t_ns (first seen)
for f in glob.glob(os.path.join(d, "*")):
    for line in open(f):
        parts = line.split()
        if len(parts) != 3:
            continue
        point, t, key = parts[0], int(parts[1]), parts[2]
        marks[key].setdefault(point, t)

HOPS = [
    ("n1: settle -> then fires -> placed, INVOKE encoded+sent", "place", "inv_sent", "in"),
    ("mesh n1 -> n2 (CURVE, zmq I/O threads, tcp)", "inv_sent", "wk_invoke", "in"),
    ("n2: queue, dispatch, INVOKE to the worker", "wk_invoke", "wk_sent", "in"),
    ("ipc n2 -> worker (libpmesh decode)", "wk_sent", "w_got", "in"),
    ("worker: the function + RESULT encode/send", "w_got", "w_sent", "cross"),
    ("ipc worker -> n2 (decode)", "w_sent", "wk_result", "out"),
    ("n2: result -> SETTLE relayed", "wk_result", "settle_send", "out"),
    ("mesh n2 -> n1 + n1 settles (store, WAL record, replicate)", "settle_send", "place", "out"),
]
rows = collections.defaultdict(list)
total = []
for key, m in marks.items():
    if "place" not in m:
        continue
    out = key + suffix
    mo = marks.get(out, {})
    vals = []
    for name, a, b, kind in HOPS:
        if kind == "in":
            ta, tb = m.get(a), m.get(b)
        elif kind == "cross":
            ta, tb = m.get(a), mo.get(b)
        else:
            ta, tb = mo.get(a), mo.get(b)
        if ta is None or tb is None:
            vals = None
            break
        vals.append((name, (tb - ta) / 1000.0))
    if vals:
        for name, v in vals:
            rows[name].append(v)
        total.append((mo["place"] - m["place"]) / 1000.0)
# Ends: the driver's resolve -> the head's then placed; the last settle -> await returns.
head = [(m["place"] - m["d_start"]) / 1000.0 for m in marks.values() if "d_start" in m and "place" in m]
tail = [(m["d_end"] - m["settle_send"]) / 1000.0 for m in marks.values() if "d_end" in m and "settle_send" in m]
print("steps with every mark: %d" % len(total))
for name, _, _, _ in HOPS:
    v = rows[name]
    if v:
        print("  %-62s p50 %7.1f us  mean %7.1f us" % (name, statistics.median(v), statistics.mean(v)))
if total:
    print("  %-62s p50 %7.1f us  mean %7.1f us" % ("one step, place -> next place", statistics.median(total), statistics.mean(total)))
if head:
    print("  %-62s p50 %7.1f us" % ("chain start: driver resolve -> head's then placed", statistics.median(head)))
if tail:
    print("  %-62s p50 %7.1f us" % ("chain end: last SETTLE relayed -> await returns (durable)", statistics.median(tail)))
