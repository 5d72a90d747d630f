"""The blocking Client against a real agent: every operation, and every
error code the agent can produce."""

import os
import threading
import time

import pytest

import pmesh
from pmesh import _common as w

from conftest import wait_until


def test_installed_package_is_used():
    # The runner installs the package into a venv; the tests must import
    # that, not the source tree.
    if os.environ.get("PMESH_EXPECT_INSTALLED"):
        assert "site-packages" in pmesh.__file__, pmesh.__file__


def test_create_resolve_get_wait(client, agent):
    pid = client.create(timeout="10s", labels={"team": "a", "kind": "b"})
    assert pid.startswith(client.node) or "~" in pid
    p = client.get(pid)
    assert p.state == "pending" and not p.settled
    assert p.labels == {"team": "a", "kind": "b"}
    assert p.timeout_at_ms - p.created_ms == 10000
    client.resolve(pid, "héllo")  # str goes as UTF-8
    assert client.wait(pid) == "héllo".encode()
    p = client.get(pid)
    assert p.state == "resolved" and p.resolved and p.value == "héllo".encode()
    assert p.settled_ms >= p.created_ms
    assert client.wait_promise(pid).value == "héllo".encode()


def test_wait_blocks_until_resolved(client, agent):
    pid = client.create()
    out = []
    t = threading.Thread(target=lambda: out.append(pmesh.Client(agent.sock).wait(pid, 10)))
    t.start()
    wait_until(lambda: agent.status()["clients"]["waiters"] >= 1, 5, "the wait to be held")
    assert t.is_alive() and out == []  # really waiting
    client.resolve(pid, b"x")
    t.join(10)
    assert out == [b"x"]


def test_binary_values(client):
    pid = client.create()
    v = bytes(range(256)) * 4
    client.resolve(pid, v)
    assert client.wait(pid) == v


def test_idempotency_key(client):
    a = client.create(idempotency_key="order-17", token=True)
    b = client.create(idempotency_key="order-17", token=True)
    assert a.id == b.id
    assert a.created is True and b.created is False
    assert client.create(idempotency_key="order-17") == a.id
    assert client.get(a.id).idempotency_key == "order-17"


def test_token_without_secret_is_none(client):
    c = client.create(token=True)
    assert isinstance(c, pmesh.Created) and c.token is None and c.created
    pid, token = c
    assert pid == c.id and client.get(pid).state == "pending" and token is None


def test_token_with_secret(tmp_path, start_agent):
    secret = tmp_path / "secret"
    secret.write_bytes(b"k" * 40)
    a = start_agent("tok", "--token-secret-file", str(secret))
    with pmesh.Client(a.sock) as c:
        cr = c.create(token=True)
        assert cr.token and len(cr.token) > 16
        assert pmesh.callback_url("http://gw:8080/", cr.id) == \
            "http://gw:8080/v1/promises/%s/resolve" % cr.id


def test_reject_cancel_timeout_raise_rejected(client):
    r = client.create()
    client.reject(r, "card declined")
    with pytest.raises(pmesh.Rejected) as e:
        client.wait(r)
    assert e.value.state == "rejected" and e.value.reason == "card declined"
    assert e.value.promise.id == r

    c = client.create()
    client.cancel(c)
    with pytest.raises(pmesh.Rejected) as e:
        client.wait(c, timeout="5s")
    assert e.value.state == "canceled"

    t = client.create(timeout=0.2)
    with pytest.raises(pmesh.Rejected) as e:
        client.wait(t, timeout=10)
    assert e.value.state == "timedout"
    assert client.wait_promise(t).state == "timedout"


def test_heartbeat(client):
    pid = client.create(heartbeat="300ms")
    for _ in range(5):
        time.sleep(0.1)
        client.heartbeat(pid)
    assert client.get(pid).state == "pending"
    assert client.get(pid).heartbeat_ms == 300
    with pytest.raises(pmesh.Rejected) as e:
        client.wait(pid, 10)
    assert e.value.state == "timedout"


def test_then_with_worker(client, agent, run_worker):
    wk = pmesh.Worker(agent.sock, concurrency=2)
    seen = []

    @wk.function("upper")
    def upper(data):
        inv = pmesh.invocation()
        seen.append((inv.function, inv.attempt))
        return data.upper()

    @wk.function("fail")
    def fail(data):
        raise RuntimeError("cannot do " + data.decode())

    run_worker(wk)
    p = client.create()
    q = client.then(p, "upper", timeout="30s")
    r = client.then(q, "upper")
    client.resolve(p, "chain")
    assert client.wait(r, 10) == b"CHAIN"
    assert seen[0] == ("upper", 1)

    src = client.create()
    f = client.then(src, "fail")
    client.resolve(src, "this")
    with pytest.raises(pmesh.Rejected) as e:
        client.wait(f, 10)
    assert "cannot do this" in e.value.reason


def test_list_filters_and_pages(client):
    ids = [client.create(labels={"batch": "L"}) for _ in range(5)]
    client.resolve(ids[0], b"")
    pending = client.list(state="pending", label="batch=L")
    assert sorted(p.id for p in pending) == sorted(ids[1:])
    assert all(p.state == "pending" for p in pending)
    assert [p.id for p in client.list(state="resolved", label=("batch", "L"))] == [ids[0]]
    page = client.list(label="batch=L", limit=2)
    assert len(page) == 2 and page.cursor
    every = list(client.list_all(label="batch=L", limit=2))
    assert sorted(p.id for p in every) == sorted(ids)
    prefix = ids[0][:-1]
    assert all(p.id.startswith(prefix) for p in client.list(prefix=prefix))


def test_status_and_members(client, agent):
    st = client.status()
    assert st["node"] == "a1"
    m = client.members()
    assert m[0]["node"] == "a1" and m[0]["self"] is True


def test_durations():
    pd = pmesh.parse_duration
    assert pd(1) == 1000 and pd(0.25) == 250 and pd("30s") == 30000
    assert pd("250ms") == 250 and pd("5m") == 300000 and pd("2h") == 7200000
    assert pd("1500") == 1500 and pd(None) is None
    import datetime
    assert pd(datetime.timedelta(seconds=2)) == 2000
    for bad in ("abc", "5 days", "-1s"):
        with pytest.raises(ValueError):
            pd(bad)
    with pytest.raises(ValueError):
        pd(-1)


# ---- every error code the agent produces ------------------------------------------

def test_err_not_found(client):
    with pytest.raises(pmesh.NotFound) as e:
        client.get("a1-nosuch~1")
    assert e.value.code == -2 and e.value.name == "NOT_FOUND"
    for call in (lambda: client.resolve("a1-nosuch~1", b""), lambda: client.wait("x~1", 1),
                 lambda: client.cancel("x~1"), lambda: client.heartbeat("x~1")):
        with pytest.raises(pmesh.NotFound):
            call()


def test_err_already_settled(client):
    pid = client.create()
    client.resolve(pid, b"one")
    client.resolve(pid, b"one")  # the same outcome again is fine
    with pytest.raises(pmesh.AlreadySettled):
        client.resolve(pid, b"two")
    with pytest.raises(pmesh.AlreadySettled):
        client.reject(pid, "no")


def test_err_timed_out(client):
    pid = client.create(timeout="100ms")
    wait_until(lambda: client.get(pid).state == "timedout", 5, "the timeout")
    with pytest.raises(pmesh.TimedOut):
        client.resolve(pid, b"late")


def test_err_value_too_large(start_agent):
    a = start_agent("small", "--max-value-bytes", "1024")
    with pmesh.Client(a.sock) as c:
        assert c.max_value == 1024
        pid = c.create()
        t0 = time.monotonic()
        with pytest.raises(pmesh.ValueTooLarge):
            c.resolve(pid, b"x" * 1025)  # refused before it is sent
        with pytest.raises(pmesh.ValueTooLarge):
            c.reject(pid, "y" * 2000)
        assert time.monotonic() - t0 < 1
        # The agent's own refusal maps to the same class.
        with pytest.raises(pmesh.ValueTooLarge):
            c._call(w.req_settle(pid, 2, value=b"x" * 1025))
        c.resolve(pid, b"x" * 1024)
        assert len(c.wait(pid)) == 1024


def test_err_bad_request(client):
    # An id not minted under this session's lease.
    with pytest.raises(pmesh.BadRequest):
        client._call(w.req_create("a1-zzz~c9.9-1", None, None, None, None, False))
    with pytest.raises(pmesh.BadRequest):
        client.list(state=99)


def test_err_wait_timeout(client):
    pid = client.create()
    t0 = time.monotonic()
    with pytest.raises(pmesh.WaitTimeout) as e:
        client.wait(pid, timeout="200ms")
    assert e.value.code == -8
    assert 0.15 < time.monotonic() - t0 < 5


def test_err_unreachable_no_socket(tmp_path):
    c = pmesh.Client(str(tmp_path / "nothing.sock"))
    t0 = time.monotonic()
    with pytest.raises(pmesh.Unreachable):
        c.create()
    assert time.monotonic() - t0 < 1


def test_err_unreachable_default_socket_env(tmp_path, monkeypatch, agent):
    monkeypatch.setenv("PMESH_SOCKET", agent.sock)
    with pmesh.Client() as c:
        assert c.node == "a1"
    monkeypatch.delenv("PMESH_SOCKET")
    assert pmesh.Client().path == pmesh.DEFAULT_SOCKET


def test_err_bad_version(client):
    env = w.req_target("get", "x~1")
    env.version = 2
    with pytest.raises(pmesh.BadVersion):
        client._call(env)


def test_err_not_holder(client, agent, run_worker):
    wk = pmesh.Worker(agent.sock)
    wk.add("f", lambda d: d)
    run_worker(wk)
    with pytest.raises(pmesh.NotHolder):
        client._call(w.req_result("no-such-invocation", True, value=b"x"))


def test_err_limit(start_agent):
    a = start_agent("lim", "--max-labels", "1", "--max-waiters-per-client", "1")
    with pmesh.Client(a.sock) as c:
        with pytest.raises(pmesh.LimitReached):
            c.create(labels={"a": "1", "b": "2"})
        pid = c.create()
        ac = pmesh.Client(a.sock)
        # One wait in flight from a side thread holds this session's one slot.
        import pmesh.aio as aio
        import asyncio

        async def two_waits():
            async with aio.Client(a.sock) as x:
                first = x.wait(pid)
                with pytest.raises(pmesh.LimitReached):
                    await x.wait(pid)
                x.resolve(pid, b"ok")
                assert await first == b"ok"
        asyncio.run(two_waits())
        ac.close()


def test_err_agent_shutting_down(agent):
    c = pmesh.Client(agent.sock)
    pid = c.create()
    got = []

    def waiter():
        try:
            c.wait(pid, 30)
        except pmesh.PmeshError as e:
            got.append(e)
    t = threading.Thread(target=waiter)
    t.start()
    wait_until(lambda: agent.status()["clients"]["waiters"] >= 1, 5, "the wait to be held")
    agent.terminate()
    t.join(10)
    assert not t.is_alive()
    assert len(got) == 1 and isinstance(got[0], (pmesh.AgentShuttingDown, pmesh.Unreachable))
    assert isinstance(got[0], pmesh.AgentShuttingDown), got[0]


def test_no_session_and_internal_are_mapped():
    # NO_SESSION and INTERNAL are never sent by this agent for valid requests
    # (INTERNAL only on allocation failure): their mapping is checked here.
    print("skipped: agent cannot be made to produce NO_SESSION / INTERNAL; mapping only")
    assert isinstance(pmesh.errors.error_for(-14), pmesh.NoSession)
    assert isinstance(pmesh.errors.error_for(-1, "x"), pmesh.Internal)
    assert isinstance(pmesh.errors.error_for(-999), pmesh.Internal)
    for code in range(-14, 0):
        e = pmesh.errors.error_for(code)
        assert e.code == code and isinstance(e, pmesh.PmeshError)
