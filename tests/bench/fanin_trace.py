#!/usr/bin/env python3
"""fanin_trace.py DIR - joins the marks of a PM_STEPTRACE build (node/steptrace.h)
taken during scripts/bench-fanin (PM_STEPTRACE_DIR=DIR BUILD=build/trace
scripts/bench-fanin) into where the fan-in's time goes, hop by hop, against
the yardstick's one mesh hop. Each mark is (point, t_ns, key) in a file named
PID.*; marks of one process are matched in time order. Prints p50 (and mean)
per hop in microseconds over the trials that have every mark."""
import bisect, collections, glob, os, statistics, sys

d = sys.argv[1]
by = collections.defaultdict(list)  # (pid, point) -> sorted [(t, key)]
allp = collections.defaultdict(list)  # point -> sorted [(t, pid, key)]
for f in glob.glob(os.path.join(d, "*")):
    pid = os.path.basename(f).split(".")[0]
    for line in open(f):
        parts = line.split()
        if len(parts) < 2:
            continue
        point, t, key = parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""
        by[(pid, point)].append((t, key))
        allp[point].append((t, pid, key))
for v in by.values():
    v.sort()
for v in allp.values():
    v.sort()


def after(pid, point, t, key=None):
    """first mark `point` of process pid at or after t (with key, if given)"""
    v = by.get((pid, point), [])
    i = bisect.bisect_left(v, (t, ""))
    for tt, k in v[i:]:
        if key is None or k == key:
            return tt
    return None


def after_any(point, t, notpid=None):
    v = allp.get(point, [])
    i = bisect.bisect_left(v, (t, "", ""))
    for tt, p, k in v[i:]:
        if p != notpid:
            return tt, p
    return None, None


def before(pid, point, t, key=None):
    v = by.get((pid, point), [])
    i = bisect.bisect_right(v, (t, "\xff"))
    for tt, k in reversed(v[:i]):
        if key is None or k == key:
            return tt
    return None


rows = collections.defaultdict(list)
skipped = 0
FAN = ["owner: settle recorded -> REPLICATE sent (end of the loop iteration)",
       "mesh owner -> backup (REPLICATE arrives)",
       "backup -> its ACK arrives at the owner",
       "owner: ACK -> held reply released",
       "mesh owner -> combinator's agent (reply heard)",
       "hub: heard -> combinator settled",
       "hub: settled -> invocation to the worker sent",
       "fan-in: settle recorded -> invocation sent"]
HOP = ["owner: settle recorded -> then fires, placed",
       "owner: placed -> INVOKE sent",
       "mesh owner -> hub (INVOKE arrives)",
       "hub: -> invocation to the worker sent",
       "hop: settle recorded -> invocation sent"]
for (pid, point), marks in list(by.items()):
    if point != "f_settle":
        continue
    for t_set, q in marks:
        # the last input heard just before the combinator settled
        t_heard = before(pid, "f_heard", t_set)
        v = [k for tt, k in by[(pid, "f_heard")] if tt == t_heard]
        if not v:
            continue
        inp = v[0]
        # the input's owner: the process that recorded its settle
        # (the backup records it too, when it applies the replicated record: later)
        owner = [(tt, p) for tt, p, k in allp["j_settle"]
                 if k == inp and t_heard - 5e6 <= tt <= t_heard and p != pid]
        if not owner:
            continue
        t_rec, op = owner[0]
        t_rs = after(op, "r_send", t_rec)
        t_br, bp = after_any("b_recv", t_rs, notpid=op) if t_rs else (None, None)
        t_ack = after(op, "r_ack", t_br) if t_br else None
        t_rel = after(op, "j_release", t_ack) if t_ack else None
        t_wk = after(pid, "wk_sent", t_set)
        ts = [t_rec, t_rs, t_br, t_ack, t_rel, t_heard, t_set, t_wk]
        # (a trial whose marks do not follow one another was matched wrongly:
        # e.g. the ACK of a later batch; left out)
        if None in ts or t_wk - t_set > 5e6 or any(b < a for a, b in zip(ts, ts[1:])):
            skipped += 1
            continue
        for name, a, b in zip(FAN, ts, ts[1:]):
            rows[name].append((b - a) / 1000.0)
        rows[FAN[-1]].append((t_wk - t_rec) / 1000.0)
# the yardstick: a then at the owner fires (place) and its INVOKE goes to the hub
for (pid, point), marks in list(by.items()):
    if point != "inv_sent":
        continue
    for t_sent, key in marks:
        if key != "x":
            continue
        t_place = before(pid, "place", t_sent)
        t_rec = before(pid, "j_settle", t_place)
        t_in, hp = after_any("wk_invoke", t_sent, notpid=pid)
        t_wk = after(hp, "wk_sent", t_in) if t_in else None
        ts = [t_rec, t_place, t_sent, t_in, t_wk]
        if None in ts or t_wk - t_rec > 5e6 or any(b < a for a, b in zip(ts, ts[1:])):
            skipped += 1
            continue
        for name, a, b in zip(HOP, ts, ts[1:]):
            rows[name].append((b - a) / 1000.0)
        rows[HOP[-1]].append((t_wk - t_rec) / 1000.0)
for name in FAN + HOP:
    v = rows[name]
    if v:
        print("%-60s n=%3d p50 %7.1f  mean %7.1f" % (name, len(v), statistics.median(v),
                                                       statistics.mean(v)))
if skipped:
    print("(%d trial(s) left out: marks missing or out of order)" % skipped)
