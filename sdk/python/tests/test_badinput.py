"""Bad input: a fake agent socket that answers garbage, one that never
answers, an agent killed mid-call, a stale socket file. Each ends in a typed
error, never a hang."""

import asyncio
import os
import threading
import time

import pytest
import zmq

import pmesh
import pmesh.aio as aio
from pmesh import _common as w

from conftest import wait_until


class FakeAgent(threading.Thread):
    """A ROUTER at an ipc path answering every request with answer(envelope
    bytes) (None: no answer)."""

    def __init__(self, path, answer):
        super().__init__(daemon=True)
        self.path, self.answer = path, answer
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.linger = 0
        self.sock.bind("ipc://" + path)
        self.stopping = threading.Event()
        self.seen = 0

    def run(self):
        while not self.stopping.is_set():
            if not self.sock.poll(50):
                continue
            rid, body = self.sock.recv_multipart()[:2]
            try:  # the client's keep-alive pings come when they come
                ping = w.Envelope.FromString(body).WhichOneof("body") == "ping"
            except Exception:
                ping = False
            if not ping:
                self.seen += 1
            out = self.answer(body)
            if out is not None:
                self.sock.send_multipart([rid] + (out if isinstance(out, list) else [out]))
        self.sock.close(0)
        self.ctx.term()

    def stop(self):
        self.stopping.set()
        self.join(5)


@pytest.fixture
def fake(tmp_path, request):
    def start(answer):
        f = FakeAgent(str(tmp_path / "fake.sock"), answer)
        f.start()
        request.addfinalizer(f.stop)
        return f
    return start


def hello_then(garbage):
    """Answers hello properly, everything else with garbage(req envelope)."""
    def answer(body):
        e = w.Envelope.FromString(body)
        if e.WhichOneof("body") == "hello":
            r = w.Envelope(version=1, req_id=e.req_id)
            r.reply.node, r.reply.mint_prefix, r.reply.session = "fake", "fake~c1.1-", 1
            r.reply.max_value = 1000
            return r.SerializeToString()
        if e.WhichOneof("body") == "ping":
            return None
        return garbage(e)
    return answer


def test_garbage_to_hello(fake):
    f = fake(lambda body: b"\xff\xfe garbage \x00\x01")
    t0 = time.monotonic()
    with pytest.raises(pmesh.Unreachable) as e:
        pmesh.Client(f.path).create()
    assert isinstance(e.value, pmesh.ProtocolError)
    assert time.monotonic() - t0 < 2


def test_garbage_reply_to_a_call(fake):
    f = fake(hello_then(lambda e: b"\x08\x01\x12"))  # truncated protobuf
    c = pmesh.Client(f.path)
    assert c.node == "fake"
    t0 = time.monotonic()
    with pytest.raises(pmesh.ProtocolError):
        c.create()
    with pytest.raises(pmesh.ProtocolError):
        c.get("x")  # connects again, same garbage
    assert time.monotonic() - t0 < 2


def test_wrong_version_and_multipart_replies(fake):
    def bad(e):
        r = w.Envelope(version=7, req_id=e.req_id)
        r.reply.id = "x"
        return r.SerializeToString()
    f = fake(hello_then(bad))
    with pytest.raises(pmesh.ProtocolError):
        pmesh.Client(f.path).create()


def test_multipart_reply(tmp_path, fake):
    f = fake(hello_then(lambda e: [b"a", b"b"]))
    with pytest.raises(pmesh.ProtocolError):
        pmesh.Client(f.path).create()


def test_garbage_reply_aio(fake):
    f = fake(hello_then(lambda e: b"\x00garbage"))

    async def main():
        c = aio.Client(f.path)
        await c.connect()
        ops = [c.create(), c.get("x"), c.wait("y")]
        for op in ops:
            with pytest.raises(pmesh.ProtocolError):
                await asyncio.wait_for(op, 5)
    asyncio.run(main())


def batch_of(*envs):
    b = w.Envelope(version=1)
    b.batch.frames.extend(e if isinstance(e, bytes) else e.SerializeToString() for e in envs)
    return b.SerializeToString()


def id_reply(req_id, pid):
    r = w.Envelope(version=1, req_id=req_id)
    r.reply.id = pid
    return r


def test_batches_taken_apart(fake):
    """A Batch from the agent (we say batches in our hello) is its envelopes,
    each taken as if it had come alone: a late reply before ours is skipped."""
    f = fake(hello_then(lambda e: batch_of(id_reply(e.req_id + 1000, "late"),
                                           id_reply(e.req_id, "fake~c1.1-9"))))
    assert pmesh.Client(f.path).create() == "fake~c1.1-9"

    async def main():
        c = aio.Client(f.path)
        await c.connect()
        assert await asyncio.wait_for(c.create(), 5) == "fake~c1.1-9"
    asyncio.run(main())


@pytest.mark.parametrize("inner", [
    lambda e: batch_of(id_reply(e.req_id, "x")),  # a batch in a batch
    lambda e: b"\x00garbage",                       # garbage inside
    lambda e: w.req_hello("x"),                     # a request body
])
def test_bad_batches_are_protocol_errors(fake, inner):
    f = fake(hello_then(lambda e: batch_of(inner(e))))
    with pytest.raises(pmesh.ProtocolError):
        pmesh.Client(f.path).create()

    async def main():
        c = aio.Client(f.path)
        await c.connect()
        with pytest.raises(pmesh.ProtocolError):
            await asyncio.wait_for(c.create(), 5)
    asyncio.run(main())


def test_hello_asks_for_batches():
    assert w.req_hello("x").hello.batches


def test_silent_agent_is_unreachable(fake):
    f = fake(lambda body: None)
    t0 = time.monotonic()
    with pytest.raises(pmesh.Unreachable):
        pmesh.Client(f.path).status()
    assert time.monotonic() - t0 < 5  # the connect timeout (3 s), not forever


def test_silent_call_is_unreachable_within_call_timeout(fake):
    f = fake(hello_then(lambda e: None))
    c = pmesh.Client(f.path, call_timeout=0.5)
    t0 = time.monotonic()
    with pytest.raises(pmesh.Unreachable):
        c.create()
    assert time.monotonic() - t0 < 3

    async def main():
        ac = aio.Client(f.path, call_timeout=0.5)
        with pytest.raises(pmesh.Unreachable):
            await asyncio.wait_for(ac.create(), 5)
    asyncio.run(main())


def test_oversize_value_from_hello(fake):
    f = fake(hello_then(lambda e: None))
    c = pmesh.Client(f.path)
    with pytest.raises(pmesh.ValueTooLarge):
        c.resolve("x", b"v" * 1001)  # hello said max_value 1000: never sent
    assert f.seen == 1  # only the hello


def test_agent_killed_mid_wait(start_agent):
    a = start_agent("k1")
    c = pmesh.Client(a.sock)
    pid = c.create()
    got = []

    def waiter():
        try:
            got.append(c.wait(pid))  # no timeout: only the drop can end it
        except pmesh.PmeshError as e:
            got.append(e)
    t = threading.Thread(target=waiter)
    t.start()
    wait_until(lambda: a.status()["clients"]["waiters"] >= 1, 5, "the wait to be held")
    t0 = time.monotonic()
    a.kill()
    t.join(10)
    assert not t.is_alive() and isinstance(got[0], pmesh.Unreachable)
    assert time.monotonic() - t0 < 3
    # The stale socket file is left behind: refused at once, not a hang.
    assert os.path.exists(a.sock)
    t0 = time.monotonic()
    with pytest.raises(pmesh.Unreachable):
        c.create()
    assert time.monotonic() - t0 < 2
    # The next call after a restart reconnects by itself.
    a.start()
    assert c.get(c.create()).state == "pending"
    c.close()


def test_agent_killed_with_aio_calls_in_flight(start_agent):
    a = start_agent("k2")

    async def main():
        c = aio.Client(a.sock)
        await c.connect()
        ids = [await c.create() for _ in range(20)]
        waits = [c.wait(i) for i in ids]
        while a.status()["clients"]["waiters"] < 20:
            await asyncio.sleep(0.02)
        a.kill()
        t0 = time.monotonic()
        for op in waits:
            with pytest.raises(pmesh.Unreachable):
                await asyncio.wait_for(op, 5)
        assert time.monotonic() - t0 < 3
        with pytest.raises(pmesh.Unreachable):
            await c.create()
        a.start()
        pid = await c.create()  # reconnects by itself
        assert (await c.get(pid)).state == "pending"
        await c.close()
    asyncio.run(main())
