#!/usr/bin/env python3
"""Benchmark of the pmesh Python SDK (pmesh.aio), with the command line of
the other SDKs' benchmarks (scripts/bench-sdk runs them side by side):

  bench.py --socket PATH --mode latency    [--count N]
      pipelined create -> resolve -> wait, one lifecycle at a time
      prints: ... p50_us=.. p90_us=.. p99_us=..
  bench.py --socket PATH --mode throughput [--window W] [--seconds S]
      lifecycles with W requests in flight (W/3 lifecycles, as pmesh-bench)
      prints: ... per_s=..
  bench.py --socket PATH --mode worker --function F [--concurrency N]
      serves F (value -> value, async) until SIGTERM/SIGINT
  bench.py --socket PATH --mode chains --function F [--steps 10] [--inflight 32] [--seconds S]
      chains of `steps` then(F) with `inflight` chains at once
      prints: ... chains_per_s=..
"""

import argparse
import asyncio
import os
import signal
import sys
import time

try:
    import pmesh.aio as aio
except ImportError:
    sys.exit("bench.py: the pmesh package is not installed (pip install ./sdk/python)")


def pct(sorted_us, p):
    return sorted_us[min(len(sorted_us) - 1, int(len(sorted_us) * p / 100.0))]


async def latency(o):
    async with aio.Client(o.socket) as c:
        samples = []
        for i in range(o.warmup + o.count):
            t0 = time.perf_counter()
            p = c.create()
            v = str(i).encode()
            r = c.resolve(p.id, v)
            w = c.wait(p.id)
            if await w != v:
                raise SystemExit("bench.py: wrong value")
            await p
            await r
            if i >= o.warmup:
                samples.append((time.perf_counter() - t0) * 1e6)
    samples.sort()
    print("pmesh-bench-py latency mode=pipelined n=%d p50_us=%.1f p90_us=%.1f p99_us=%.1f"
          % (len(samples), pct(samples, 50), pct(samples, 90), pct(samples, 99)))


async def throughput(o):
    loop = asyncio.get_running_loop()
    async with aio.Client(o.socket) as c:
        lanes = max(1, o.window // 3)
        done = loop.create_future()
        stats = {"ok": 0, "bad": 0, "sending": True, "inflight": 0}
        value = b"v" * 16

        def start():
            stats["inflight"] += 1
            p = c.create()
            pid = p.id
            c.resolve(pid, value)
            c.wait(pid).add_done_callback(finish)
            p.add_done_callback(swallow)

        def swallow(op):
            if op.exception() is not None:
                stats["bad"] += 1

        def finish(op):
            stats["inflight"] -= 1
            if op.exception() is None and op.result() == value:
                stats["ok"] += 1
            else:
                stats["bad"] += 1
            if stats["sending"]:
                start()
            elif stats["inflight"] == 0 and not done.done():
                done.set_result(None)

        t0 = time.perf_counter()
        for _ in range(lanes):
            start()
        await asyncio.sleep(o.seconds)
        stats["sending"] = False
        await done
        elapsed = time.perf_counter() - t0
    print("pmesh-bench-py throughput window=%d seconds=%.1f lifecycles=%d errors=%d per_s=%.0f"
          % (o.window, elapsed, stats["ok"], stats["bad"], stats["ok"] / elapsed))
    if stats["bad"]:
        sys.exit(1)


async def worker(o):
    w = aio.Worker(o.socket, concurrency=o.concurrency)

    @w.function(o.function)
    async def same(data):
        return data

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, w.stop)
    w.on_serving = lambda: print("bench.py: worker serving %s" % o.function, flush=True)
    await w.run()


async def chains(o):
    loop = asyncio.get_running_loop()
    async with aio.Client(o.socket) as c:
        done = loop.create_future()
        stats = {"ok": 0, "bad": 0, "sending": True, "inflight": 0}
        value = b"chain"

        def start():
            stats["inflight"] += 1
            p = c.create()
            last = p.id
            for _ in range(o.steps):
                last = c.then(last, o.function).id
            c.resolve(p.id, value)
            c.wait(last, 60).add_done_callback(finish)

        def finish(op):
            stats["inflight"] -= 1
            if op.exception() is None and op.result() == value:
                stats["ok"] += 1
            else:
                stats["bad"] += 1
                if stats["bad"] <= 3:
                    print("bench.py: chain failed: %r" % (op.exception(),), file=sys.stderr)
            if stats["sending"]:
                start()
            elif stats["inflight"] == 0 and not done.done():
                done.set_result(None)

        t0 = time.perf_counter()
        for _ in range(o.inflight):
            start()
        await asyncio.sleep(o.seconds)
        stats["sending"] = False
        await done
        elapsed = time.perf_counter() - t0
    print("pmesh-bench-py chains steps=%d inflight=%d seconds=%.1f chains=%d errors=%d "
          "chains_per_s=%.1f" % (o.steps, o.inflight, elapsed, stats["ok"], stats["bad"],
                                 stats["ok"] / elapsed))
    if stats["bad"]:
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", default=os.environ.get("PMESH_SOCKET"))
    ap.add_argument("--mode", required=True,
                    choices=["latency", "throughput", "worker", "chains"])
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--function", default="bench")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--inflight", type=int, default=32)
    o = ap.parse_args()
    asyncio.run({"latency": latency, "throughput": throughput, "worker": worker,
                 "chains": chains}[o.mode](o))


if __name__ == "__main__":
    main()
