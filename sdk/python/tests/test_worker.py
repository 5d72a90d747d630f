"""Workers: N invocations in flight at once in one process, and a worker
that outlives its agent (SIGKILL + restart on the same data dir)."""

import asyncio
import threading
import time

import pmesh
import pmesh.aio as aio

from conftest import wait_until


class Gauge:
    """Counts invocations in flight; remembers the most at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = self.most = 0

    def enter(self):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self):
        with self.lock:
            self.now -= 1


def chains(sock, function, n, value=b"x"):
    with pmesh.Client(sock) as c:
        ids = []
        for _ in range(n):
            p = c.create()
            ids.append((p, c.then(p, function)))
        for p, _ in ids:
            c.resolve(p, value)
        return [c.wait(q, 30) for _, q in ids]


def test_threaded_worker_runs_n_at_once(agent, run_worker):
    n = 8
    g = Gauge()
    release = threading.Event()
    wk = pmesh.Worker(agent.sock, concurrency=n)

    @wk.function("slow")
    def slow(data):
        g.enter()
        try:
            # Hold the slot until all n are in (or give up after 10 s).
            wait_until(lambda: g.most >= n or release.is_set(), 10, "n in flight")
            return data + b"!"
        finally:
            g.leave()

    run_worker(wk)
    out = chains(agent.sock, "slow", 2 * n)
    release.set()
    assert out == [b"x!"] * (2 * n)
    assert g.most == n  # n at once, never more (the agent gives at most n)


def test_async_worker_runs_n_at_once(agent):
    n = 16
    g = Gauge()

    async def main():
        wk = aio.Worker(agent.sock, concurrency=n)

        @wk.function("slow")
        async def slow(data):
            g.enter()
            try:
                t0 = time.monotonic()
                while g.most < n and time.monotonic() - t0 < 10:
                    await asyncio.sleep(0.005)
                return data
            finally:
                g.leave()

        task = asyncio.ensure_future(wk.run())
        async with aio.Client(agent.sock) as c:
            ps = [c.create() for _ in range(3 * n)]
            qs = [c.then(p.id, "slow") for p in ps]
            for p in ps:
                c.resolve(p.id, b"v")
            assert [await c.wait(q.id, 30) for q in qs] == [b"v"] * (3 * n)
        wk.stop()
        await asyncio.wait_for(task, 10)
    asyncio.run(main())
    assert g.most == n


def test_worker_survives_agent_sigkill_and_restart(tmp_path, start_agent, run_worker):
    data = tmp_path / "data"
    a = start_agent("a1", "--data-dir", str(data), "--client-timeout", "1s")
    wk = pmesh.Worker(a.sock, concurrency=4)
    wk.add("inc", lambda d: str(int(d) + 1))
    run_worker(wk)
    c = pmesh.Client(a.sock)
    # Chain 1 before the kill: p1 -> inc -> q1, p1 still pending.
    p1 = c.create()
    q1 = c.then(p1, "inc")
    a.kill()
    # The worker notices, stays up and keeps trying.
    wait_until(lambda: wk._conn is None, 10, "the worker to see its agent gone")
    assert wk._loop is not None  # run() has not returned
    a.start()
    wait_until(lambda: wk.sessions >= 2, 20, "the worker to register again")
    # The client's next call reconnects by itself.
    c.resolve(p1, "41")
    assert c.wait(q1, 20) == b"42"
    # Chain 2 after the restart.
    p2 = c.create()
    q2 = c.then(p2, "inc")
    c.resolve(p2, "1")
    assert c.wait(q2, 20) == b"2"
    assert wk.sessions == 2
    c.close()


def test_worker_waits_for_an_agent_that_is_not_there_yet(tmp_path, start_agent, run_worker):
    sock = str(tmp_path / "late.sock")
    wk = pmesh.Worker(sock, concurrency=1, backoff_max=0.2)
    wk.add("id", lambda d: d)
    run_worker(wk, wait=False)
    time.sleep(0.3)
    assert wk.sessions == 0
    a = start_agent("late")
    assert a.sock == sock
    wait_until(lambda: wk.sessions == 1, 10, "the worker to register")
    assert chains(sock, "id", 2, b"z") == [b"z", b"z"]


def test_invocation_in_flight_at_sigkill_is_served_again(tmp_path, start_agent, run_worker):
    a = start_agent("a1", "--data-dir", str(tmp_path / "data"))
    calls = []
    killed = threading.Event()
    wk = pmesh.Worker(a.sock, concurrency=2)

    @wk.function("hold")
    def hold(data):
        calls.append(pmesh.invocation().attempt)
        if len(calls) == 1:
            killed.wait(20)  # the first invocation is still running at the kill
        return data + b"-done"

    run_worker(wk)
    c = pmesh.Client(a.sock)
    p = c.create()
    q = c.then(p, "hold")
    c.resolve(p, b"job")
    wait_until(lambda: len(calls) == 1, 10, "the invocation to start")
    a.kill()
    a.start()
    killed.set()  # the first run answers now, to a session that is gone: dropped
    assert c.wait(q, 20) == b"job-done"
    assert len(calls) == 2  # the restarted agent handed it out again
    assert c.get(q).state == "resolved"
    c.close()
