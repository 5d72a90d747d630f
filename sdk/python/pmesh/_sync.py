"""The blocking client: one DEALER socket per connection, calls one at a time
(a lock makes a Client safe to share between threads), a side thread that
pings the agent, and a socket monitor that turns a dropped connection into
Unreachable at once. A lost connection is dropped; the next call opens a new
one (a new session) by itself."""

import os
import stat
import threading
import time

import zmq
from zmq.utils.monitor import parse_monitor_message

from . import _common as w
from . import errors

_MON_EVENTS = zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_CLOSED


def _context():
    return zmq.Context.instance()


def check_socket(path):
    """Unreachable at once if nothing can listen at path."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise errors.Unreachable("no agent socket at %s (%s)" % (path, e.strerror))
    if not stat.S_ISSOCK(st.st_mode):
        raise errors.Unreachable("%s is not a socket" % path)


class _Pinger(threading.Thread):
    """Keeps the session alive: pings from its own socket (ZeroMQ sockets are
    not shared between threads), as libpmesh does."""

    def __init__(self, endpoint, session, interval):
        super().__init__(name="pmesh-ping", daemon=True)
        self.endpoint, self.interval = endpoint, interval
        self.frame = w.req_ping(session).SerializeToString()
        self.stopping = threading.Event()

    def run(self):
        s = _context().socket(zmq.DEALER)
        s.linger = 0
        s.reconnect_ivl = -1  # never ping a restarted agent's sessions
        s.connect(self.endpoint)
        try:
            while True:
                try:
                    s.send(self.frame, zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
                if self.stopping.wait(self.interval):
                    break
        finally:
            s.close(0)


class Connection:
    """One session with the agent (blocking)."""

    def __init__(self, path, name, connect_timeout=w.CONNECT_TIMEOUT):
        check_socket(path)
        self.endpoint = "ipc://" + path
        self.dead = None
        self.next_req = 0
        ctx = _context()
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.sndhwm = self.sock.rcvhwm = 1000000
        # A dropped connection ends the session: never reconnect underneath
        # (a restarted agent would see requests from a session it never met).
        self.sock.reconnect_ivl = 600000  # not -1: PROTOCOL.md, section 4
        self.monitor = self.sock.get_monitor_socket(_MON_EVENTS)
        self.poller = zmq.Poller()
        self.poller.register(self.sock, zmq.POLLIN)
        self.poller.register(self.monitor, zmq.POLLIN)
        self.pinger = None
        try:
            self.sock.connect(self.endpoint)
            r = w.check(self.call(w.req_hello(name), connect_timeout, hello=True))
        except errors.PmeshError as e:
            self.close()
            if isinstance(e, errors.Unreachable):
                raise
            raise errors.Unreachable("hello refused: %s" % e)
        except BaseException:
            self.close()
            raise
        self.node, self.mint, self.session = r.node, r.mint_prefix, r.session
        self.max_value, self.client_timeout_ms = r.max_value, r.client_timeout_ms
        self.next_mint = 0
        self.pinger = _Pinger(self.endpoint, self.session, w.ping_interval(r.client_timeout_ms))
        self.pinger.start()

    def _lost(self, exc):
        if not self.dead:
            self.dead = exc
        raise exc

    def alive(self):
        """False once the connection is known lost (looks at the monitor)."""
        if not self.dead:
            try:
                self._monitor_events(False)
            except errors.Unreachable:
                pass
        return not self.dead

    def _monitor_events(self, hello):
        while True:
            try:
                ev = parse_monitor_message(self.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if ev["event"] == zmq.EVENT_DISCONNECTED:
                self._lost(errors.Unreachable("connection to the agent was lost"))
            if hello and ev["event"] in (zmq.EVENT_CONNECT_RETRIED, zmq.EVENT_CLOSED):
                self._lost(errors.Unreachable("the agent socket refuses connections"))

    def call(self, env, timeout, hello=False):
        """Sends env and returns the reply Envelope (errors not yet checked).
        timeout None: no limit (a dropped connection still ends it)."""
        if self.dead:
            raise self.dead
        self.next_req += 1
        rid = env.req_id = self.next_req
        try:
            self.sock.send(env.SerializeToString(), zmq.NOBLOCK)
        except zmq.ZMQError as e:
            self._lost(errors.Unreachable("send: %s" % e))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                self._lost(errors.Unreachable("no reply from the agent in %.1f s" % timeout))
            events = dict(self.poller.poll(min(left, 1.0) * 1000))
            if self.sock in events:
                e = self._read(rid)
                if e is not None:
                    return e
            if self.monitor in events:
                try:
                    self._monitor_events(hello)
                except errors.Unreachable:
                    # What the agent said before the drop still counts (its
                    # last words may trail the event by a moment).
                    if self.sock.poll(w.LAST_WORDS_GRACE * 1000, zmq.POLLIN):
                        e = self._read(rid)
                        if e is not None:
                            return e
                    raise

    def _read(self, rid):
        """Reads what is in; the reply to rid if it came, else None."""
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return None
            if len(frames) != 1:
                self._lost(errors.ProtocolError("reply of %d frames" % len(frames)))
            try:
                envs = w.decode(frames[0])
            except errors.ProtocolError as exc:
                self._lost(exc)
            for e in envs:
                if e.WhichOneof("body") == "reply" and e.req_id == rid:
                    return e
            # a late reply to a call that gave up: dropped (one call is in
            # flight at a time, so nothing after its reply is still wanted)

    def close(self, bye=False):
        if bye and not self.dead:
            try:
                self.sock.send(w.req_empty("bye").SerializeToString(), zmq.NOBLOCK)
                self.sock.linger = 100
            except zmq.ZMQError:
                pass
        if self.pinger:
            self.pinger.stopping.set()
            self.pinger.join()
            self.pinger = None
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(0)
        self.sock.close()
        if not self.dead:
            self.dead = errors.Unreachable("connection closed")


class Client:
    """A blocking client of the pmesh agent on this node.

    socket: the agent's socket path (default $PMESH_SOCKET, then
    /run/pmesh/agent.sock). Connects on the first call (or connect()); after
    the agent goes away, calls in flight raise Unreachable and the next call
    connects again (a new session). Safe to share between threads (calls are
    serialized)."""

    def __init__(self, socket=None, call_timeout=w.CALL_TIMEOUT, name="pmesh-python"):
        self.path = w.socket_path(socket)
        self.call_timeout = call_timeout
        self.name = name
        self._conn = None
        self._lock = threading.RLock()

    # ---- connection ----

    def connect(self):
        """Opens the session now (calls do it by themselves when needed)."""
        with self._lock:
            return self._ensure()

    def _ensure(self):
        c = self._conn
        if c is None or not c.alive():
            if c is not None:
                c.close()
            self._conn = None
            self._conn = Connection(self.path, self.name)
        return self._conn

    @property
    def node(self):
        """The agent's node name."""
        return self.connect().node

    @property
    def max_value(self):
        """The largest value the agent accepts, in bytes."""
        return self.connect().max_value

    def close(self):
        """Says bye and closes the session (waits of this client end)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close(bye=True)
                self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if self._conn is not None:
                self._conn.close()
        except Exception:
            pass

    def _call(self, env, timeout=-1.0):
        with self._lock:
            c = self._ensure()
            try:
                e = c.call(env, self.call_timeout if timeout == -1.0 else timeout)
            except errors.Unreachable:
                c.close()
                if self._conn is c:
                    self._conn = None
                raise
            return w.check(e)

    # ---- calls ----

    def create(self, timeout=None, heartbeat=None, idempotency_key=None, labels=None,
               token=False):
        """Creates a pending promise and returns its id. timeout: it times out
        after that long (seconds or "30s"); heartbeat: it times out unless
        heartbeat() is called at least that often; idempotency_key: a second
        create with the same key returns the first promise's id; labels: a
        dict. token=True returns a pair Created(id, token) instead (.created:
        False when the idempotency key matched an existing promise), token
        being the settle token for an outside system (None if the agent has
        no token secret)."""
        r = self._call(w.req_create(None, timeout, heartbeat, idempotency_key, labels, token))
        if token:
            return w.Created(r.id, r.token or None, r.created)
        return r.id

    def resolve(self, id, value=b""):
        """Resolves the promise with value (bytes; a str is sent as UTF-8)."""
        v = w.to_bytes(value)
        w.check_value(self._max_value(), v)
        self._call(w.req_settle(id, 2, value=v))

    def reject(self, id, reason=""):
        """Rejects the promise with a reason."""
        reason = reason or ""
        w.check_value(self._max_value(), b"", reason)
        self._call(w.req_settle(id, 3, reason=reason))

    def cancel(self, id):
        """Cancels the promise."""
        self._call(w.req_settle(id, 4))

    def heartbeat(self, id):
        """Pushes the promise's heartbeat deadline forward."""
        self._call(w.req_target("heartbeat", id))

    def get(self, id):
        """The promise as it is now (a Promise)."""
        return w.promise_from(self._call(w.req_target("get", id)).promise)

    def wait_promise(self, id, timeout=None):
        """Waits until the promise settles (any state) and returns it;
        WaitTimeout if it is still pending after timeout (None: no limit)."""
        t = w.parse_duration(timeout)
        limit = None if t is None else t / 1000.0 + self.call_timeout
        return w.promise_from(self._call(w.req_await(id, timeout), limit).promise)

    def wait(self, id, timeout=None):
        """Waits until the promise settles and returns its value (bytes).
        Rejected if it was rejected, canceled or timed out; WaitTimeout if it
        is still pending after timeout (None: no limit)."""
        return w.wait_result(self.wait_promise(id, timeout))

    def then(self, id, function, timeout=None, on_reject=None):
        """Chains function on the promise: when it resolves, a worker's
        function gets its value and the new promise (whose id this returns
        at once) settles with the answer. on_reject: a function invoked
        with the promise's reason when it fails (rejected, canceled, timed
        out), whose answer settles the new promise instead (a catch), so a
        chain can recover. timeout bounds the new promise."""
        with self._lock:
            c = self._ensure()
            c.next_mint += 1
            nid = w.mint_then_id(c.mint, c.next_mint, id)
            self._call(w.req_then(id, function, nid, timeout, on_reject))
            return nid

    def _combine(self, kind, ids, timeout):
        ids = w.combine_ids(ids)
        with self._lock:
            c = self._ensure()
            c.next_mint += 1
            nid = w.mint_combine_id(c.mint, c.next_mint)
            self._call(w.req_combine(kind, ids, nid, timeout))
            return nid

    def all(self, ids, timeout=None):
        """A new promise (its id, returned at once) that resolves when every
        input resolved, with the list of their values in input order
        (wait_all() decodes it), and rejects as soon as one fails (the
        Rejected's .failures names it). The inputs may live on any agents;
        the same id twice counts twice. timeout bounds the new promise. It
        is an ordinary promise (wait, then, another combinator's input);
        settling it is refused (NotSettleable)."""
        return self._combine("all", ids, timeout)

    def any(self, ids, timeout=None):
        """A new promise that resolves with the value of the first input to
        resolve (wait() gives it as bytes), and rejects when every input
        failed (.failures lists them all)."""
        return self._combine("any", ids, timeout)

    def race(self, ids, timeout=None):
        """A new promise that settles as the first input to settle."""
        return self._combine("race", ids, timeout)

    def all_settled(self, ids, timeout=None):
        """A new promise that resolves when every input settled, with each
        input's outcome (wait_all_settled() decodes them: a list of
        pmesh.Outcome)."""
        return self._combine("all_settled", ids, timeout)

    def wait_all(self, id, timeout=None):
        """Waits for an all() and returns its values as a list (str for
        values that are UTF-8, bytes for the others); Rejected (.failures)
        if it failed, WaitTimeout if still pending after timeout."""
        return w.wait_values(self.wait_promise(id, timeout))

    def wait_all_settled(self, id, timeout=None):
        """Waits for an all_settled() and returns its list of Outcome."""
        return w.wait_outcomes(self.wait_promise(id, timeout))

    def list(self, state=None, prefix=None, label=None, limit=None, cursor=None):
        """One page of promises (a list with .cursor for the next page, "" on
        the last). state: "pending", ...; prefix: of the id; label: "k=v" or
        (k, v)."""
        r = self._call(w.req_list(state, prefix, label, limit, cursor))
        out = w.PromiseList(w.promise_from(p) for p in r.promises)
        out.cursor = r.cursor
        return out

    def list_all(self, state=None, prefix=None, label=None, limit=None):
        """Every promise matching, across pages (a generator)."""
        cursor = None
        while True:
            page = self.list(state, prefix, label, limit, cursor)
            yield from page
            if not page.cursor:
                return
            cursor = page.cursor

    def status(self):
        """The agent's status (a dict)."""
        import json
        return json.loads(self._call(w.req_empty("status")).json or "{}")

    def members(self):
        """The mesh members as this agent sees them (a list of dicts)."""
        import json
        return json.loads(self._call(w.req_empty("members")).json or "[]")

    def _max_value(self):
        return self.connect().max_value
