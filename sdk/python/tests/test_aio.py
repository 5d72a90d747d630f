"""pmesh.aio against a real agent: the same operations as coroutines, and
pipelining (many requests in flight on one connection, ids minted locally)."""

import asyncio

import pytest

import pmesh
import pmesh.aio as aio


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_operations(agent):
    async def main():
        async with aio.Client(agent.sock) as c:
            assert c.node == "a1"
            pid = await c.create(timeout="10s", labels={"k": "v"})
            p = await c.get(pid)
            assert p.state == "pending" and p.labels == {"k": "v"}
            await c.heartbeat(pid)
            await c.resolve(pid, "v")
            assert await c.wait(pid) == b"v"
            assert (await c.wait_promise(pid)).state == "resolved"
            r = await c.create()
            await c.reject(r, "why")
            with pytest.raises(pmesh.Rejected) as e:
                await c.wait(r)
            assert e.value.reason == "why" and e.value.state == "rejected"
            x = await c.create()
            await c.cancel(x)
            with pytest.raises(pmesh.Rejected):
                await c.wait(x)
            with pytest.raises(pmesh.WaitTimeout):
                await c.wait(await c.create(), timeout=0.1)
            with pytest.raises(pmesh.NotFound):
                await c.get("a1-x~nope")
            with pytest.raises(pmesh.AlreadySettled):
                await c.resolve(pid, "other")
            page = await c.list(label="k=v")
            assert [q.id for q in page] == [pid] and page.cursor == ""
            assert (await c.status())["node"] == "a1"
            assert (await c.members())[0]["node"] == "a1"
            cr = await c.create(token=True, idempotency_key="k1")
            assert cr.created and (await c.create(idempotency_key="k1")) == cr.id
    run(main())


def test_pipelined_sequence_without_round_trips(agent, run_worker):
    wk = pmesh.Worker(agent.sock, concurrency=4)
    wk.add("double", lambda d: d * 2)
    run_worker(wk)

    async def main():
        async with aio.Client(agent.sock) as c:
            conn = c._conn
            # Four requests out before any reply can come in (no await between):
            p = c.create()
            assert p.id and p.id.startswith(conn.mint)  # minted locally, at once
            q = c.then(p.id, "double")
            assert q.id
            r = c.resolve(p.id, b"ab")
            v = c.wait(q.id, timeout="10s")
            assert len(conn.pending) == 4 and not any(o.done() for o in (p, q, r, v))
            assert await v == b"abab"
            assert await p == p.id and await q == q.id and await r is None
    run(main())


def test_many_in_flight(agent, monkeypatch):
    n = 2000
    # The replies to a pipelined burst come batched (Hello.batches): count
    # the frames the client reads against the envelopes in them.
    from pmesh import _common as w
    seen = {"frames": 0, "envelopes": 0}
    decode = w.decode

    def counting(frame):
        envs = decode(frame)
        seen["frames"] += 1
        seen["envelopes"] += len(envs)
        return envs
    monkeypatch.setattr(w, "decode", counting)

    async def main():
        async with aio.Client(agent.sock) as c:
            ops = []
            for i in range(n):
                p = c.create()
                ops.append((p, c.resolve(p.id, str(i)), c.wait(p.id)))
            assert len(c._conn.pending) == 3 * n
            for i, (p, r, v) in enumerate(ops):
                assert await v == str(i).encode()
                await p
                await r
            assert not c._conn.pending
    run(main())
    assert seen["envelopes"] >= 3 * n
    assert seen["frames"] < seen["envelopes"] / 2, seen


def test_ops_before_connect_connect_by_themselves(agent):
    async def main():
        c = aio.Client(agent.sock)
        pid = await c.create()  # connects first
        c2 = aio.Client(agent.sock)
        q = c2.then(pid, "nobody")  # not connected: the id comes with the reply
        assert await q == q.id and q.id
        await c.resolve(pid, "x")
        assert await c.wait(pid) == b"x"
        await c.close()
        await c2.close()
    run(main())


def test_value_too_large_is_refused_locally(start_agent):
    a = start_agent("small", "--max-value-bytes", "100")

    async def main():
        async with aio.Client(a.sock) as c:
            pid = c.create().id
            with pytest.raises(pmesh.ValueTooLarge):
                await c.resolve(pid, b"x" * 101)
            await c.resolve(pid, b"x" * 100)
            assert len(await c.wait(pid)) == 100
    run(main())


def test_async_worker_functions(agent):
    async def main():
        wk = aio.Worker(agent.sock, concurrency=3)

        @wk.function("shout")
        async def shout(data):
            await asyncio.sleep(0.01)
            return data.decode().upper() + "!"

        @wk.function("boom")
        async def boom(data):
            raise ValueError("bad input " + data.decode())

        task = asyncio.ensure_future(wk.run())
        async with aio.Client(agent.sock) as c:
            while wk.sessions == 0:
                await asyncio.sleep(0.01)
            p = c.create()
            q = c.then(p.id, "shout")
            b = c.then(p.id, "boom")
            c.resolve(p.id, "hi")
            assert await c.wait(q.id, 10) == b"HI!"
            with pytest.raises(pmesh.Rejected) as e:
                await c.wait(b.id, 10)
            assert "bad input hi" in e.value.reason
        wk.stop()
        await asyncio.wait_for(task, 10)
    run(main())
