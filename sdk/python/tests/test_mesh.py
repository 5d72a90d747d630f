"""A mesh of three agents: promises created on one node are waited on,
chained and settled from the others; a dead owner fails them with OwnerLost."""

import asyncio
import threading

import pytest

import pmesh
import pmesh.aio as aio

from conftest import wait_until


def test_three_agents(mesh3, run_worker):
    n1, n2, n3 = mesh3
    wk = pmesh.Worker(n3.sock, concurrency=4)
    wk.add("rev", lambda d: d[::-1])
    run_worker(wk)
    c1, c2, c3 = (pmesh.Client(a.sock) for a in mesh3)
    # wait until n1 and n2 have heard (gossip) that n3 serves rev
    def serves(a):
        return any(f.get("name") == "rev" for m in pmesh.Client(a.sock).members()
                   for f in m.get("functions", []))
    wait_until(lambda: serves(n1) and serves(n2), 10, "gossip of the worker")
    p = c1.create(timeout="30s")
    assert c1.node == "n1"
    q = c2.then(p, "rev")              # chained from n2 on n1's promise
    got = []
    t = threading.Thread(target=lambda: got.append(c2.wait(q, 20)))
    t.start()
    c3.resolve(p, b"abc")              # settled from n3
    t.join(30)
    assert got == [b"cba"]
    assert c3.get(q).value == b"cba"
    assert c1.wait(p, 5) == b"abc"

    async def pipelined():
        async with aio.Client(n2.sock) as c:
            ops = []
            for i in range(50):
                a = c.create()
                b = c.then(a.id, "rev")
                c.resolve(a.id, str(i))
                ops.append(c.wait(b.id, 20))
            return [await o for o in ops]
    assert asyncio.run(pipelined()) == [str(i).encode()[::-1] for i in range(50)]
    for c in (c1, c2, c3):
        c.close()


def test_owner_lost(mesh3):
    n1, n2, _ = mesh3
    c1, c2 = pmesh.Client(n1.sock), pmesh.Client(n2.sock)
    p = c1.create()
    assert c2.get(p).state == "pending"
    n1.kill()
    with pytest.raises(pmesh.OwnerLost):
        def gone():
            try:
                c2.get(p)
                return False
            except pmesh.OwnerLost:
                raise
            except pmesh.Unreachable:
                return False
        wait_until(gone, 20, "n1 to be declared dead")
    c2.close()
