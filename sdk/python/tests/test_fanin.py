"""Combinators (all, any, race, all_settled) and then(on_reject=) against real
agents: one agent, and a mesh of three with inputs on every agent; the
blocking and the asyncio client; results decoded into native lists."""

import asyncio
import threading

import pytest

import pmesh
import pmesh.aio as aio

from conftest import wait_until


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_decoders():
    assert pmesh.decode_values(b'["a", {"base64": "/wA="}, ""]') == ["a", b"\xff\x00", ""]
    out = pmesh.decode_outcomes(
        b'[{"state":"resolved","value":"x"},{"state":"rejected","reason":"no"},'
        b'{"state":"timedout","reason":{"base64":"gA=="}}]')
    assert out == [pmesh.Outcome("resolved", "x", None), pmesh.Outcome("rejected", None, "no"),
                   pmesh.Outcome("timedout", None, b"\x80")]
    assert out[0].resolved and not out[1].resolved
    assert pmesh.decode_failures('{"id":"a~1","state":"canceled","reason":""}') == [
        pmesh.Failure("a~1", "canceled", "")]
    assert pmesh.decode_failures("plain words") == []
    with pytest.raises(pmesh.ProtocolError):
        pmesh.decode_values(b'{"not": "a list"}')
    with pytest.raises(pmesh.ProtocolError):
        pmesh.decode_values(b'[1]')


def test_all_any_race_all_settled(client):
    c = client
    a, b = c.create(timeout="1m"), c.create(timeout="1m")
    al = c.all([a, b, a], timeout="1m")
    an = c.any([a, b])
    ra = c.race([b, a])
    st = c.all_settled([a, b])
    assert c.get(al).state == "pending"
    with pytest.raises(pmesh.NotSettleable):
        c.resolve(al, "forged")
    with pytest.raises(pmesh.NotSettleable):
        c.cancel(st)
    c.resolve(a, b"\xff\x00")   # not UTF-8: comes back as bytes
    assert c.wait(ra, 10) == b"\xff\x00"  # race/any: the winner's bytes as they are
    assert c.wait(an, 10) == b"\xff\x00"
    c.resolve(b, "héllo")
    assert c.wait_all(al, 10) == [b"\xff\x00", "héllo", b"\xff\x00"]
    assert c.wait_all_settled(st, 10) == [pmesh.Outcome("resolved", b"\xff\x00", None),
                                          pmesh.Outcome("resolved", "héllo", None)]


def test_failures_and_timeout(client):
    c = client
    a, b, x = c.create(), c.create(), c.create()
    al = c.all([a, b])
    an = c.any([a, b])
    st = c.all_settled([a, b])
    c.reject(a, "first")
    with pytest.raises(pmesh.Rejected) as e:
        c.wait_all(al, 10)
    assert e.value.failures == [pmesh.Failure(a, "rejected", "first")]
    with pytest.raises(pmesh.WaitTimeout):
        c.wait(an, 0.2)             # one input still may resolve
    c.cancel(b)
    with pytest.raises(pmesh.Rejected) as e:
        c.wait(an, 10)
    assert [f.state for f in e.value.failures] == ["rejected", "canceled"]
    outs = c.wait_all_settled(st, 10)
    assert [(o.state, o.value) for o in outs] == [("rejected", None), ("canceled", None)]
    assert outs[0].reason == "first"
    t = c.race([x], timeout="200ms")
    with pytest.raises(pmesh.Rejected) as e:
        c.wait(t, 10)
    assert e.value.state == "timedout" and e.value.failures == []
    assert c.get(x).state == "pending"
    # Nested: a combinator is an input like any promise.
    n = c.all_settled([al, t])
    assert [o.state for o in c.wait_all_settled(n, 10)] == ["rejected", "timedout"]
    with pytest.raises(TypeError):
        c.all(a)                    # one string is not a list of ids
    with pytest.raises(ValueError):
        c.any([])


def test_limit(start_agent):
    ag = start_agent("a1", "--max-fanin-inputs", "3")
    with pmesh.Client(ag.sock) as c:
        p = c.create()
        assert c.get(c.all([p, p, p])).state == "pending"
        with pytest.raises(pmesh.LimitReached):
            c.all([p] * 4)


def test_then_on_reject(client, agent, run_worker):
    wk = pmesh.Worker(agent.sock, concurrency=2)
    wk.add("upper", lambda d: d.upper())
    wk.add("recover", lambda reason: b"recovered from " + reason)
    run_worker(wk)
    c = client
    p = c.create()
    q = c.then(p, "upper", on_reject="recover")
    c.reject(p, "boom")
    assert c.wait(q, 10) == b"recovered from boom"
    p2 = c.create()
    q2 = c.then(p2, "upper", on_reject="recover")
    c.resolve(p2, "fine")
    assert c.wait(q2, 10) == b"FINE"
    # then on a combinator: the function gets the JSON list.
    a, b = c.create(), c.create()
    j = c.then(c.all([a, b]), "upper")
    c.resolve(a, "x")
    c.resolve(b, "y")
    assert pmesh.decode_values(c.wait(j, 10)) == ["X", "Y"]


def test_aio_pipelined(agent, run_worker):
    wk = pmesh.Worker(agent.sock)
    wk.add("recover", lambda reason: b"ok:" + reason)
    run_worker(wk)

    async def main():
        async with aio.Client(agent.sock) as c:
            # Everything pipelined: inputs, combinators and settles are sent
            # before any reply is read.
            ps = [c.create(timeout="1m") for _ in range(5)]
            al = c.all([p.id for p in ps])
            st = c.all_settled([p.id for p in ps])
            ra = c.race([p.id for p in ps])
            an = c.any([p.id for p in ps])
            assert al.id and st.id and ra.id and an.id
            vals = c.wait_all(al.id, 10)
            for i, p in enumerate(ps[:4]):
                c.resolve(p.id, "v%d" % i)
            c.reject(ps[4].id, "last")
            with pytest.raises(pmesh.Rejected) as e:
                await vals
            assert e.value.failures == [pmesh.Failure(ps[4].id, "rejected", "last")]
            assert await c.wait(ra.id, 10) == b"v0"
            assert await c.wait(an.id, 10) == b"v0"
            outs = await c.wait_all_settled(st.id, 10)
            assert [o.state for o in outs] == ["resolved"] * 4 + ["rejected"]
            assert [o.value for o in outs[:4]] == ["v0", "v1", "v2", "v3"]
            # gather: Promise.all over pmesh promises.
            xs = [c.create() for _ in range(3)]
            g = asyncio.ensure_future(c.gather([x.id for x in xs], timeout="10s"))
            for i, x in enumerate(xs):
                c.resolve(x.id, bytes([0x80 + i]))
            assert await g == [b"\x80", b"\x81", b"\x82"]
            # on_reject, pipelined behind the create.
            p = c.create()
            q = c.then(p.id, "nothing-serves-this", on_reject="recover")
            c.reject(p.id, "why")
            assert await c.wait(q.id, 10) == b"ok:why"
            pending = c.race([c.create().id])
            with pytest.raises(pmesh.NotSettleable):
                await c.resolve(pending.id, "x")
            with pytest.raises(TypeError):
                await c.all("one-id")
    run(main())


def test_mesh_inputs_on_every_agent(mesh3):
    n1, n2, n3 = mesh3
    cs = [pmesh.Client(a.sock) for a in mesh3]
    try:
        ids = [c.create(timeout="1m") for c in cs]
        assert [i.split("-")[0] for i in ids] == ["n1", "n2", "n3"]
        al = cs[1].all(ids + [ids[0]])      # owned by n2, inputs on all three
        st = cs[2].all_settled(ids)
        got = []
        waiter = pmesh.Client(n1.sock)  # a Client runs one call at a time
        cs.append(waiter)
        t = threading.Thread(target=lambda: got.append(waiter.wait_all(al, 20)))
        t.start()
        for k, c in enumerate(cs[:3]):
            c.resolve(ids[k], "from n%d" % (k + 1))
        t.join(30)
        assert got == [["from n1", "from n2", "from n3", "from n1"]]
        assert [o.value for o in cs[0].wait_all_settled(st, 10)] == ["from n1", "from n2",
                                                                     "from n3"]
        pend = cs[1].any([cs[2].create()])
        with pytest.raises(pmesh.NotSettleable):
            cs[0].resolve(pend, "forged")    # relayed to n2, refused there
    finally:
        for c in cs:
            c.close()
