"""pmesh for asyncio: the Client's API as awaitables, with many requests in
flight on one connection, and the Worker with async (or threaded) functions.

Every Client method sends its request at once and returns an Op, an
asyncio.Future that completes with the reply. Requests go out in call order
and the agent serves them in order, so a sequence pipelines without a round
trip between its steps: create() mints the id under the session's lease and
puts it on the Op at once (op.id, when connected: await connect() first),
so then(), resolve() and wait() can use it before create's reply is in:

    async with pmesh.aio.Client() as c:
        p = c.create(timeout="1m")
        q = c.then(p.id, "resize")
        c.resolve(p.id, b"input")
        print(await c.wait(q.id))

An Op that is never awaited still completes; its error is then only logged
by asyncio. A dropped connection fails every Op in flight with Unreachable;
the next call connects again."""

import asyncio
import contextvars
import inspect
import json
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor

import zmq
from zmq.utils.monitor import parse_monitor_message

from . import _common as w
from . import errors
from ._sync import _MON_EVENTS, _context, check_socket

__all__ = ["Client", "Worker", "Op", "Invocation", "invocation"]

log = logging.getLogger("pmesh")

# Plain ints: pyzmq's enum constants cost an enum operation per use.
_NOBLOCK = int(zmq.NOBLOCK)
_Again = zmq.Again

# What a reply becomes, by the kind of request.
K_ID, K_NONE, K_PROMISE, K_WAIT, K_CREATED, K_LIST, K_JSON, K_REPLY, K_VALUES, K_OUTCOMES = \
    range(10)


class Op(asyncio.Future):
    """The awaitable of one request: completes with its result. `id` is the
    promise id of a create() or then() (the new promise), known at once."""

    __slots__ = ("id",)


class _Conn:
    """One session: a DEALER socket read from the event loop's reader
    callback, requests by req_id, pings from a timer on the same socket."""

    def __init__(self, loop, path, name, on_invoke=None):
        check_socket(path)
        self.loop = loop
        self.name = name
        self.on_invoke = on_invoke
        self.pending = {}
        self.next_req = 0
        self.next_mint = 0
        self.dead = None
        self.lost = False
        self.closed = asyncio.Event()
        self.hello = None
        self.drain_scheduled = False
        self.sock = _context().socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.sndhwm = self.sock.rcvhwm = 1000000
        # A dropped connection ends the session; not -1, which drops replies
        # not yet read when the connection goes (PROTOCOL.md, section 4).
        self.sock.reconnect_ivl = 600000
        self.monitor = self.sock.get_monitor_socket(_MON_EVENTS)
        self.sock.connect("ipc://" + path)
        self.fd = self.sock.getsockopt(zmq.FD)
        self.mfd = self.monitor.getsockopt(zmq.FD)
        loop.add_reader(self.fd, self._drain)
        loop.add_reader(self.mfd, self._on_monitor)
        # ZeroMQ's descriptors signal edges, and only once armed by a look at
        # the socket's events: look once now (and at every tick, to be sure).
        loop.call_soon(self._on_monitor)
        self.timer = None
        self.send_frame = self.sock.send
        self.getsockopt = self.sock.getsockopt
        self.recv = self.sock.recv

    async def open(self, timeout=w.CONNECT_TIMEOUT):
        op = Op(loop=self.loop)
        self.request(w.req_hello(self.name), K_REPLY, op, None)
        try:
            r = w.check(await asyncio.wait_for(asyncio.shield(op), timeout))
        except asyncio.TimeoutError:
            self.fail(errors.Unreachable("no hello reply from the agent in %.1f s" % timeout))
            raise self.dead
        except errors.Unreachable:
            raise
        except errors.PmeshError as e:
            self.fail(errors.Unreachable("hello refused: %s" % e))
            raise self.dead
        self.hello = r
        self.node, self.mint, self.session = r.node, r.mint_prefix, r.session
        self.max_value = r.max_value
        self.interval = w.ping_interval(r.client_timeout_ms)
        self.ping_frame = w.req_ping(r.session).SerializeToString()
        self.timer = self.loop.call_later(self.interval, self._tick)
        return self

    # ---- sending ----

    def request(self, env, kind, op, timeout):
        """Sends env; op completes with its reply as `kind` says. timeout
        (seconds; None: none) bounds the wait for the reply."""
        if self.dead or self.lost:
            op.set_exception(self.dead or errors.Unreachable("connection to the agent was lost"))
            return op
        self.next_req += 1
        rid = env.req_id = self.next_req
        try:
            self.send_frame(env.SerializeToString(), _NOBLOCK)
        except zmq.ZMQError as e:
            op.set_exception(errors.Unreachable("send: %s" % e))
            self.fail(errors.Unreachable("send: %s" % e))
            return op
        self.pending[rid] = (op, kind, None if timeout is None else time.monotonic() + timeout)
        # A send may consume the socket's read edge: look for replies once
        # this round of callbacks is done.
        if not self.drain_scheduled:
            self.drain_scheduled = True
            self.loop.call_soon(self._drain)
        return op

    def send_only(self, env):
        if not self.dead:
            try:
                self.send_frame(env.SerializeToString(), _NOBLOCK)
            except zmq.ZMQError:
                pass

    # ---- receiving ----

    def _drain(self):
        self.drain_scheduled = False
        if self.dead:
            return
        recv, pending = self.recv, self.pending
        try:
            while True:
                try:
                    frame = recv(_NOBLOCK)
                except _Again:
                    break
                # (a multi-frame message fails to decode: its first or its
                # next frame is not an envelope)
                for e in w.decode(frame):  # the envelopes of a batch as if each came alone
                    if e.WhichOneof("body") == "invoke":
                        if self.on_invoke:
                            self.on_invoke(self, e.invoke)
                        continue
                    entry = pending.pop(e.req_id, None)
                    if entry is None:
                        continue  # a reply to a request that gave up
                    op, kind, _ = entry
                    if op.done():
                        continue
                    r = e.reply
                    if r.err:
                        op.set_exception(errors.error_for(r.err, r.message))
                    elif kind == K_NONE:
                        op.set_result(None)
                    elif kind == K_WAIT:
                        p = r.promise
                        if p.state == 2:
                            op.set_result(p.value)
                        else:
                            op.set_exception(errors.Rejected(w.promise_from(p)))
                    elif kind == K_ID:
                        op.set_result(r.id)
                    elif kind == K_VALUES or kind == K_OUTCOMES:
                        p = w.promise_from(r.promise)
                        try:
                            op.set_result(w.wait_values(p) if kind == K_VALUES
                                          else w.wait_outcomes(p))
                        except errors.PmeshError as exc:
                            op.set_exception(exc)
                    elif kind == K_PROMISE:
                        op.set_result(w.promise_from(r.promise))
                    elif kind == K_CREATED:
                        op.set_result(w.Created(r.id, r.token or None, r.created))
                    elif kind == K_LIST:
                        out = w.PromiseList(w.promise_from(p) for p in r.promises)
                        out.cursor = r.cursor
                        op.set_result(out)
                    elif kind == K_JSON:
                        op.set_result(json.loads(r.json or "null"))
                    else:
                        op.set_result(e)
        except errors.ProtocolError as exc:
            self.fail(exc)
        except zmq.ZMQError as exc:
            self.fail(errors.Unreachable("receive: %s" % exc))

    def _on_monitor(self):
        if self.dead:
            return
        while True:
            try:
                ev = parse_monitor_message(self.monitor.recv_multipart(_NOBLOCK))
            except zmq.Again:
                return
            except zmq.ZMQError:
                return
            if ev["event"] == zmq.EVENT_DISCONNECTED:
                # What came before the drop still counts; the agent's last
                # words may trail the event by a moment.
                self._drain()
                self.lost = True
                self.loop.call_later(w.LAST_WORDS_GRACE, self._lost)
                return
            if self.hello is None and ev["event"] in (zmq.EVENT_CONNECT_RETRIED,
                                                      zmq.EVENT_CLOSED):
                self.fail(errors.Unreachable("the agent socket refuses connections"))
                return

    def _lost(self):
        self._drain()
        self.fail(errors.Unreachable("connection to the agent was lost"))

    def _tick(self):
        """Keep-alive ping, and the end of requests whose time is up."""
        if self.dead:
            return
        self.send_only_frame(self.ping_frame)
        self._on_monitor()
        self._drain()
        if self.dead:
            return
        now = time.monotonic()
        late = [rid for rid, (_, _, dl) in self.pending.items() if dl is not None and dl < now]
        if late:
            # No reply in time: the agent hangs, so the whole session is suspect.
            self.fail(errors.Unreachable("no reply from the agent in time"))
            return
        self.timer = self.loop.call_later(self.interval, self._tick)

    def send_only_frame(self, frame):
        try:
            self.send_frame(frame, _NOBLOCK)
        except zmq.ZMQError:
            pass

    # ---- the end ----

    def fail(self, exc):
        """Ends the session: every request in flight fails with exc."""
        if self.dead:
            return
        self.dead = exc
        pending, self.pending = self.pending, {}
        for op, _, _ in pending.values():
            if not op.done():
                op.set_exception(type(exc)(exc.message))
        self._close_sockets()

    def _close_sockets(self):
        if self.timer:
            self.timer.cancel()
        try:
            self.loop.remove_reader(self.fd)
            self.loop.remove_reader(self.mfd)
        except Exception:
            pass
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(0)
        self.sock.close(0)
        self.closed.set()

    def close(self, bye=True):
        if self.dead:
            return
        if bye:
            self.send_only(w.req_empty("bye"))
        self.sock.linger = 100 if bye else 0
        self.fail(errors.Unreachable("connection closed"))


class Client:
    """The pmesh client for asyncio (see the module's doc). socket: the
    agent's socket path (default $PMESH_SOCKET, then /run/pmesh/agent.sock).
    call_timeout: how long a request other than a wait may go unanswered
    before the agent is called unreachable."""

    def __init__(self, socket=None, call_timeout=w.CALL_TIMEOUT, name="pmesh-python-aio"):
        self.path = w.socket_path(socket)
        self.call_timeout = call_timeout
        self.name = name
        self._conn = None
        self._connecting = None

    async def connect(self):
        """Opens the session now (calls do it by themselves when needed;
        after it, create().id and then().id are known at once)."""
        c = self._conn
        if c is not None and not c.dead and not c.lost:
            return c
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _open(self):
        loop = asyncio.get_running_loop()
        c = _Conn(loop, self.path, self.name)
        await c.open()
        self._conn = c
        return c

    @property
    def node(self):
        """The agent's node name (after connect())."""
        return self._conn.node if self._conn else None

    async def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def __aenter__(self):
        await self.connect()
        return self

    async def __aexit__(self, *exc):
        await self.close()

    def _live(self):
        c = self._conn
        return c if c is not None and not c.dead and not c.lost else None

    def _later(self, op, send):
        """Not connected: connect, then send (op.id is set then)."""
        async def go():
            c = await self.connect()
            inner = send(c)
            return await inner
        t = asyncio.ensure_future(go())

        def done(t):
            if op.done():
                return
            if t.cancelled():
                op.cancel()
            elif t.exception() is not None:
                op.set_exception(t.exception())
            else:
                op.set_result(t.result())
        t.add_done_callback(done)
        return op

    def _go(self, send):
        c = self._live()
        if c is not None:
            return send(c)
        return self._later(Op(), lambda c: send(c))

    # ---- calls: each returns an Op at once ----

    def create(self, timeout=None, heartbeat=None, idempotency_key=None, labels=None,
               token=False):
        """Creates a promise; the Op completes with its id (op.id has it at
        once when connected and no idempotency key is given), or with
        a Created(id, token) pair when token=True (see pmesh.Client.create)."""
        env = w.req_create(None, timeout, heartbeat, idempotency_key, labels, token)
        kind = K_CREATED if token else K_ID
        c = self._live()
        if c is not None:
            return self._send_create(c, env, kind, idempotency_key, Op())
        op = Op()
        op.id = None
        return self._later(op, lambda c: self._send_create(c, env, kind, idempotency_key, op,
                                                            chained=True))

    def _send_create(self, c, env, kind, key, op, chained=False):
        if key:
            op.id = None  # the agent decides: an existing promise may match
        else:
            c.next_mint += 1
            op.id = env.create.id = "%s%x" % (c.mint, c.next_mint)
        if chained:
            inner = Op()
            c.request(env, kind, inner, self.call_timeout)
            return inner
        return c.request(env, kind, op, self.call_timeout)

    def resolve(self, id, value=b""):
        """Resolves the promise with value (bytes; str as UTF-8)."""
        v = w.to_bytes(value)

        def send(c):
            op = Op()
            try:
                w.check_value(c.max_value, v)
            except errors.ValueTooLarge as e:
                op.set_exception(e)
                return op
            return c.request(w.req_settle(id, 2, value=v), K_NONE, op, self.call_timeout)
        return self._go(send)

    def reject(self, id, reason=""):
        reason = reason or ""

        def send(c):
            op = Op()
            try:
                w.check_value(c.max_value, b"", reason)
            except errors.ValueTooLarge as e:
                op.set_exception(e)
                return op
            return c.request(w.req_settle(id, 3, reason=reason), K_NONE, op, self.call_timeout)
        return self._go(send)

    def cancel(self, id):
        return self._go(lambda c: c.request(w.req_settle(id, 4), K_NONE, Op(),
                                            self.call_timeout))

    def heartbeat(self, id):
        return self._go(lambda c: c.request(w.req_target("heartbeat", id), K_NONE, Op(),
                                            self.call_timeout))

    def get(self, id):
        """The Op completes with the Promise as it is now."""
        return self._go(lambda c: c.request(w.req_target("get", id), K_PROMISE, Op(),
                                            self.call_timeout))

    def _wait(self, id, timeout, kind):
        env = w.req_await(id, timeout)
        t = w.parse_duration(timeout)
        limit = None if t is None else t / 1000.0 + self.call_timeout
        return self._go(lambda c: c.request(env, kind, Op(), limit))

    def wait(self, id, timeout=None):
        """The Op completes with the value once the promise resolves; fails
        with Rejected (rejected, canceled, timed out) or WaitTimeout."""
        return self._wait(id, timeout, K_WAIT)

    def wait_promise(self, id, timeout=None):
        """The Op completes with the settled Promise (any state)."""
        return self._wait(id, timeout, K_PROMISE)

    def then(self, id, function, timeout=None, on_reject=None):
        """Chains function on the promise; op.id is the new promise's id (at
        once when connected), and the Op completes with it. on_reject: the
        function run with the reason when the promise fails (a catch)."""
        def send(c, op=None):
            c.next_mint += 1
            nid = w.mint_then_id(c.mint, c.next_mint, id)
            o = Op()
            o.id = nid
            if op is not None:
                op.id = nid
            return c.request(w.req_then(id, function, nid, timeout, on_reject), K_ID, o,
                             self.call_timeout)
        c = self._live()
        if c is not None:
            return send(c)
        op = Op()
        op.id = None
        return self._later(op, lambda c: send(c, op))

    def _combine(self, kind, ids, timeout):
        try:
            ids = w.combine_ids(ids)
        except (TypeError, ValueError) as e:
            op = Op()
            op.id = None
            op.set_exception(e)
            return op

        def send(c, op=None):
            c.next_mint += 1
            nid = w.mint_combine_id(c.mint, c.next_mint)
            o = Op()
            o.id = nid
            if op is not None:
                op.id = nid
            return c.request(w.req_combine(kind, ids, nid, timeout), K_ID, o, self.call_timeout)
        c = self._live()
        if c is not None:
            return send(c)
        op = Op()
        op.id = None
        return self._later(op, lambda c: send(c, op))

    def all(self, ids, timeout=None):
        """A combinator (see pmesh.Client.all): op.id is its id at once (when
        connected), pipelined like then(); the Op completes with it. Its
        inputs may be ids of promises whose create is still in flight."""
        return self._combine("all", ids, timeout)

    def any(self, ids, timeout=None):
        return self._combine("any", ids, timeout)

    def race(self, ids, timeout=None):
        return self._combine("race", ids, timeout)

    def all_settled(self, ids, timeout=None):
        return self._combine("all_settled", ids, timeout)

    def wait_all(self, id, timeout=None):
        """The Op completes with an all()'s values as a list (str when UTF-8,
        else bytes); fails with Rejected (.failures) or WaitTimeout."""
        return self._wait(id, timeout, K_VALUES)

    def wait_all_settled(self, id, timeout=None):
        """The Op completes with an all_settled()'s list of Outcome."""
        return self._wait(id, timeout, K_OUTCOMES)

    async def gather(self, ids, timeout=None):
        """Promise.all for pmesh promises: the list of values (as wait_all)
        of an all() over ids, without bringing a single value through this
        process before they are all there."""
        a = self.all(ids, timeout)
        if a.id is None:  # not connected yet: the id comes with the reply
            await a
        values = self.wait_all(a.id, timeout)  # pipelined behind the combine
        try:
            await a
        except BaseException:
            values.cancel()
            raise
        return await values

    def list(self, state=None, prefix=None, label=None, limit=None, cursor=None):
        env = w.req_list(state, prefix, label, limit, cursor)
        return self._go(lambda c: c.request(env, K_LIST, Op(), self.call_timeout))

    def status(self):
        return self._go(lambda c: c.request(w.req_empty("status"), K_JSON, Op(),
                                            self.call_timeout))

    def members(self):
        return self._go(lambda c: c.request(w.req_empty("members"), K_JSON, Op(),
                                            self.call_timeout))


# ---- workers ----------------------------------------------------------------------

class Invocation:
    """The invocation a worker function is serving (pmesh.aio.invocation()):
    its id, the function's name, the promise the answer settles (target_id)
    and which attempt this is (1 first)."""

    __slots__ = ("id", "function", "input", "target_id", "attempt")

    def __init__(self, inv):
        self.id, self.function, self.input = inv.invocation_id, inv.function, inv.input
        self.target_id, self.attempt = inv.target_id, inv.attempt


_current = contextvars.ContextVar("pmesh_invocation", default=None)


def invocation():
    """The Invocation being served, inside a worker function (else None)."""
    return _current.get()


class Worker:
    """Serves functions to the agent: invocations of them come in, their
    answers settle promises chained with then().

        w = pmesh.aio.Worker(concurrency=32)

        @w.function("resize")
        async def resize(data: bytes) -> bytes: ...

        await w.run()

    A function takes the input (bytes) and returns bytes (str as UTF-8; None
    as empty); an exception it raises rejects the promise with its message.
    Async functions run as tasks on the loop, plain functions on a pool of
    `concurrency` threads; at most `concurrency` invocations are in flight.

    run() serves until stop(). When the agent goes away it reconnects with
    capped exponential backoff and jitter (backoff_initial .. backoff_max
    seconds), opens a new session and registers again: a restart of the
    agent never ends it."""

    def __init__(self, socket=None, concurrency=1, name="pmesh-python-worker",
                 backoff_initial=0.05, backoff_max=2.0):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.path = w.socket_path(socket)
        self.concurrency = concurrency
        self.name = name
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.functions = {}
        self.sessions = 0        # sessions registered so far (1 + reconnections)
        self.invocations = 0     # invocations answered
        self._stop = None
        self._loop = None
        self._pool = None
        self._conn = None
        self._tasks = set()
        self.on_serving = None   # called (no arguments) each time registration succeeds

    def function(self, name):
        """Decorator: serve the decorated function under name."""
        def deco(fn):
            self.add(name, fn)
            return fn
        return deco

    def add(self, name, fn):
        self.functions[name] = fn

    def stop(self):
        """Ends run() (from any thread)."""
        loop, ev = self._loop, self._stop
        if loop is not None and ev is not None:
            loop.call_soon_threadsafe(ev.set)

    async def run(self):
        if not self.functions:
            raise ValueError("no functions to serve")
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="pmesh-fn")
        delay = self.backoff_initial
        stop_wait = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                try:
                    c = _Conn(self._loop, self.path, self.name, self._on_invoke)
                    await c.open()
                    op = c.request(w.req_register(list(self.functions), self.concurrency),
                                   K_NONE, Op(), w.CALL_TIMEOUT)
                    await op
                except errors.Unreachable as e:
                    log.debug("pmesh worker: agent unreachable (%s); retrying in %.2f s", e, delay)
                    await asyncio.wait([stop_wait], timeout=delay * random.uniform(0.5, 1.0))
                    delay = min(delay * 2, self.backoff_max)
                    continue
                except errors.PmeshError:
                    c.close(bye=False)
                    raise
                self._conn = c
                self.sessions += 1
                delay = self.backoff_initial
                log.info("pmesh worker: serving %s on %s (session %d)",
                         ", ".join(self.functions), c.node, c.session)
                if self.on_serving:
                    self.on_serving()
                closed = asyncio.ensure_future(c.closed.wait())
                await asyncio.wait([closed, stop_wait], return_when=asyncio.FIRST_COMPLETED)
                closed.cancel()
                if not c.dead:
                    c.close()
                elif not self._stop.is_set():
                    log.warning("pmesh worker: %s; reconnecting", c.dead)
                self._conn = None
        finally:
            stop_wait.cancel()
            for t in list(self._tasks):
                t.cancel()
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._pool.shutdown(wait=False)
            self._loop = None

    def _on_invoke(self, conn, inv):
        t = self._loop.create_task(self._serve(conn, Invocation(inv)))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _serve(self, conn, inv):
        fn = self.functions.get(inv.function)
        token = _current.set(inv)
        try:
            if fn is None:
                raise LookupError("function %s is not served here" % inv.function)
            if inspect.iscoroutinefunction(fn):
                out = await fn(inv.input)
            else:
                ctx = contextvars.copy_context()
                out = await self._loop.run_in_executor(self._pool, ctx.run, fn, inv.input)
                if inspect.isawaitable(out):
                    out = await out
            value = w.to_bytes(out)
            if conn.max_value and len(value) > conn.max_value:
                raise errors.ValueTooLarge("result of %d bytes is larger than the agent accepts "
                                           "(%d)" % (len(value), conn.max_value))
            env = w.req_result(inv.id, True, value=value)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            reason = str(e) or type(e).__name__
            env = w.req_result(inv.id, False, reason=reason)
        finally:
            _current.reset(token)
        if conn.dead:
            return  # that session is gone; the agent gives the invocation to another
        try:
            await conn.request(env, K_NONE, Op(), w.CALL_TIMEOUT)
            self.invocations += 1
        except errors.NotHolder:
            log.warning("pmesh worker: invocation %s is no longer ours", inv.id)
        except errors.PmeshError as e:
            log.warning("pmesh worker: answering invocation %s: %s", inv.id, e)
