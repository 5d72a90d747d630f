"""What the blocking and the asyncio clients share: durations, the Promise
type, socket paths, and the wire (requests built as Envelopes, replies
checked and turned into values or exceptions)."""

import base64
import binascii
import datetime
import json
import os
import re
import warnings
from collections import namedtuple

from . import errors
from ._proto import pmesh_pb2 as pb

# protobuf's C++ parser warns about some garbage before refusing it; the
# garbage is reported as ProtocolError instead.
warnings.filterwarnings("ignore", message="Unexpected end-group tag", category=RuntimeWarning)

WIRE_VERSION = 1
DEFAULT_SOCKET = "/run/pmesh/agent.sock"
# How long a call (other than a wait) waits for its reply before the agent is
# called unreachable: generous, a loaded agent is slow, not gone.
CALL_TIMEOUT = 30.0
# How long connecting waits for the hello reply.
CONNECT_TIMEOUT = 3.0
# Keep-alive: a quarter of the agent's client_timeout, at most this.
PING_MAX = 0.4

STATES = {1: "pending", 2: "resolved", 3: "rejected", 4: "canceled", 5: "timedout"}
STATE_NUMBERS = {v: k for k, v in STATES.items()}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, None: 1}


def parse_duration(value):
    """Milliseconds (int) for a duration: a number of seconds (int, float), a
    datetime.timedelta, or a string "250ms", "30s", "5m", "2h" (a bare number
    in a string is milliseconds, as in the pmesh CLI). None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("a duration is seconds, a timedelta or a string like '30s'")
    if isinstance(value, datetime.timedelta):
        ms = value.total_seconds() * 1000
    elif isinstance(value, (int, float)):
        ms = value * 1000
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if not m:
            raise ValueError("bad duration %r (use e.g. '250ms', '30s', '5m', '2h')" % value)
        ms = float(m.group(1)) * _UNIT_MS[m.group(2)]
    else:
        raise TypeError("a duration is seconds, a timedelta or a string like '30s'")
    if ms < 0:
        raise ValueError("a duration cannot be negative")
    return int(round(ms))


def socket_path(socket=None):
    """The agent socket: the argument, else $PMESH_SOCKET, else the default."""
    return socket or os.environ.get("PMESH_SOCKET") or DEFAULT_SOCKET


# After the connection drops, replies the agent sent just before it (its
# last words: AGENT_SHUTTING_DOWN to every waiter when it stops) may still be
# on their way through ZeroMQ's I/O thread when the disconnect event is seen:
# calls in flight wait this long for them before they fail UNREACHABLE.
LAST_WORDS_GRACE = 0.5


def ping_interval(client_timeout_ms):
    """Seconds between keep-alive pings for an agent's client_timeout_ms."""
    if not client_timeout_ms:
        return PING_MAX
    return min(client_timeout_ms / 4000.0, PING_MAX)


def to_bytes(value):
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError("a value is bytes or str, not %s" % type(value).__name__)


class Promise(namedtuple("Promise", "id state value reason created_ms settled_ms timeout_at_ms "
                                    "heartbeat_ms heartbeat_at_ms labels idempotency_key")):
    """A promise as the agent reports it. state is "pending", "resolved",
    "rejected", "canceled" or "timedout"; value is bytes; labels a dict;
    times are unix milliseconds (0: none)."""

    __slots__ = ()

    @property
    def settled(self):
        return self.state != "pending"

    @property
    def resolved(self):
        return self.state == "resolved"

    def text(self):
        """The value decoded as UTF-8."""
        return self.value.decode()


def promise_from(p):
    return Promise(p.id, STATES.get(p.state, "unknown"), p.value, p.reason, p.created_ms,
                   p.settled_ms, p.timeout_at_ms, p.heartbeat_ms, p.heartbeat_at_ms,
                   {lb.key: lb.value for lb in p.labels}, p.idempotency_key)


class Created(namedtuple("Created", "id token")):
    """What create(token=True) returns: a pair (id, token), the token being
    the settle token for an outside system (None when the agent has no token
    secret configured), and .created: False when an idempotency key matched
    an existing promise. callback_url(base, id) gives the URL the outside
    system POSTs to."""

    def __new__(cls, id, token, created=True):
        self = super().__new__(cls, id, token)
        self.created = created
        return self


class PromiseList(list):
    """One page of list(): the promises, and `cursor` for the next page ("" on
    the last)."""

    cursor = ""


def callback_url(base_url, promise_id):
    """The URL an outside system POSTs {"value": ...} to (with the header
    Authorization: Bearer <token>) to resolve a promise through an agent's
    HTTP gateway. base_url is the agent's http_public_url (default
    $PMESH_HTTP_URL)."""
    base = base_url or os.environ.get("PMESH_HTTP_URL")
    if not base:
        raise ValueError("no base URL: pass the gateway's http_public_url or set $PMESH_HTTP_URL")
    return "%s/v1/promises/%s/resolve" % (base.rstrip("/"), promise_id)


def wait_result(promise):
    """The value of a settled promise, or Rejected."""
    if promise.state == "resolved":
        return promise.value
    raise errors.Rejected(promise)


# ---- requests ----------------------------------------------------------------

Envelope = pb.Envelope


def _labels(target, labels):
    if not labels:
        return
    items = labels.items() if isinstance(labels, dict) else labels
    for k, v in items:
        lb = target.add()
        lb.key = k
        lb.value = v


def req_hello(name):
    e = Envelope(version=WIRE_VERSION)
    e.hello.SetInParent()
    e.hello.client_name = name
    e.hello.batches = True  # what one turn of the agent has for us may come as one frame
    return e


def req_create(minted_id, timeout, heartbeat, idempotency_key, labels, token):
    e = Envelope(version=WIRE_VERSION)
    c = e.create
    c.SetInParent()
    if minted_id:
        c.id = minted_id
    t = parse_duration(timeout)
    if t:
        c.timeout_ms = t
    h = parse_duration(heartbeat)
    if h:
        c.heartbeat_ms = h
    if idempotency_key:
        c.idempotency_key = idempotency_key
    _labels(c.labels, labels)
    if token:
        c.want_token = True
    return e


def req_settle(pid, kind, value=b"", reason=""):
    e = Envelope(version=WIRE_VERSION)
    s = e.settle
    s.id = pid
    s.kind = kind
    if value:
        s.value = value
    if reason:
        s.reason = reason
    return e


def req_target(kind, pid):
    e = Envelope(version=WIRE_VERSION)
    getattr(e, kind).id = pid
    return e


def req_await(pid, timeout):
    e = Envelope(version=WIRE_VERSION)
    a = e.await_ if hasattr(e, "await_") else getattr(e, "await")
    a.id = pid
    t = parse_duration(timeout)
    a.timeout_ms = -1 if t is None else t
    return e


def req_then(pid, function, new_id, timeout, on_reject=None):
    e = Envelope(version=WIRE_VERSION)
    t = e.then
    t.id = pid
    t.function = function
    if new_id:
        t.new_id = new_id
    ms = parse_duration(timeout)
    if ms:
        t.timeout_ms = ms
    if on_reject:
        t.on_reject = on_reject
    return e


# Combinators (proto/PROTOCOL.md, section 5a): the Combinator enum's numbers.
COMBINATORS = {"all": 1, "any": 2, "race": 3, "all_settled": 4}


def combine_ids(ids):
    """The inputs of a combinator as a list of ids: a str is one id (not its
    characters), anything else an iterable of ids (duplicates count)."""
    if isinstance(ids, str):
        raise TypeError("a combinator takes a list of promise ids, not one string")
    out = list(ids)
    if not out:
        raise ValueError("a combinator needs at least one input")
    for i in out:
        if not isinstance(i, str) or not i:
            raise TypeError("a promise id is a non-empty str, not %r" % (i,))
    return out


def req_combine(kind, ids, new_id, timeout):
    e = Envelope(version=WIRE_VERSION)
    c = e.combine
    c.kind = COMBINATORS[kind]
    c.ids.extend(ids)
    if new_id:
        c.new_id = new_id
    ms = parse_duration(timeout)
    if ms:
        c.timeout_ms = ms
    return e


# ---- list results of combinators ------------------------------------------------

def _item(v):
    """One value (or reason) inside a combinator's JSON: a str when the bytes
    were UTF-8, bytes for {"base64": ...}."""
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and set(v) == {"base64"} and isinstance(v["base64"], str):
        try:
            return base64.b64decode(v["base64"], validate=True)
        except (binascii.Error, ValueError):
            pass
    raise errors.ProtocolError("not a combinator's value: %r" % (v,))


def _json_list(data):
    try:
        out = json.loads(data.decode() if isinstance(data, (bytes, bytearray)) else data)
    except (ValueError, UnicodeDecodeError):
        out = None
    if not isinstance(out, list):
        raise errors.ProtocolError("a combinator's result is not a JSON array")
    return out


class Outcome(namedtuple("Outcome", "state value reason")):
    """One input's outcome in all_settled(): state "resolved" with value (str
    when it was UTF-8, else bytes), or "rejected" / "canceled" / "timedout"
    with reason (str, or bytes if it was not UTF-8)."""

    __slots__ = ()

    @property
    def resolved(self):
        return self.state == "resolved"


class Failure(namedtuple("Failure", "id state reason")):
    """One failed input in a rejected all() (one) or any() (every input):
    its id, its state and its reason."""

    __slots__ = ()


def decode_values(data):
    """all()'s value (JSON array) as a list: str for values that were UTF-8,
    bytes for the others."""
    return [_item(v) for v in _json_list(data)]


def decode_outcomes(data):
    """all_settled()'s value as a list of Outcome."""
    out = []
    for o in _json_list(data):
        if not isinstance(o, dict) or not isinstance(o.get("state"), str):
            raise errors.ProtocolError("not an outcome: %r" % (o,))
        if o["state"] == "resolved":
            out.append(Outcome("resolved", _item(o.get("value", "")), None))
        else:
            out.append(Outcome(o["state"], None, _item(o.get("reason", ""))))
    return out


def decode_failures(reason):
    """The failed inputs in the reason of a rejected all() (a list of one) or
    any() (every input), as a list of Failure. [] when the reason is not
    one of those (e.g. the combinator itself timed out)."""
    try:
        v = json.loads(reason)
    except (TypeError, ValueError):
        return []
    items = v if isinstance(v, list) else [v]
    out = []
    for f in items:
        if not isinstance(f, dict) or "id" not in f or "state" not in f:
            return []
        try:
            out.append(Failure(f["id"], f["state"], _item(f.get("reason", ""))))
        except errors.ProtocolError:
            return []
    return out


def wait_values(promise):
    """all(): the decoded list of a settled combinator, or Rejected (with
    .failures)."""
    if promise.state == "resolved":
        return decode_values(promise.value)
    raise errors.Rejected(promise)


def wait_outcomes(promise):
    if promise.state == "resolved":
        return decode_outcomes(promise.value)
    raise errors.Rejected(promise)


def req_list(state, prefix, label, limit, cursor):
    e = Envelope(version=WIRE_VERSION)
    ls = e.list
    ls.SetInParent()
    if state:
        if isinstance(state, str):
            if state not in STATE_NUMBERS:
                raise ValueError("unknown state %r" % state)
            state = STATE_NUMBERS[state]
        ls.state = state
    if prefix:
        ls.prefix = prefix
    if label:
        if isinstance(label, str):
            k, sep, v = label.partition("=")
            if not sep:
                raise ValueError("a label filter is 'key=value' or a (key, value) pair")
        else:
            k, v = label
        ls.label.key = k
        ls.label.value = v
    if limit:
        ls.limit = limit
    if cursor:
        ls.cursor = cursor
    return e


def req_empty(kind):
    e = Envelope(version=WIRE_VERSION)
    getattr(e, kind).SetInParent()
    return e


def req_register(functions, concurrency):
    e = Envelope(version=WIRE_VERSION)
    e.register.SetInParent()
    e.register.functions.extend(functions)
    e.register.concurrency = concurrency
    return e


def req_result(invocation_id, ok, value=b"", reason=""):
    e = Envelope(version=WIRE_VERSION)
    r = e.result
    r.invocation_id = invocation_id
    r.ok = ok
    if value:
        r.value = value
    if reason:
        r.reason = reason
    return e


def req_ping(session):
    e = Envelope(version=WIRE_VERSION)
    e.ping.SetInParent()
    e.ping.session = session
    return e


def mint_combine_id(mint, counter):
    """A combinator lives with our agent: minted under our lease."""
    return "%s%x" % (mint, counter)


def mint_then_id(mint, counter, pid):
    """The id a then() on pid mints: the new promise lives where pid lives, so
    it is minted under our lease when our agent owns pid's space, else as
    <owner space>~<our lease><n> (no other minter can produce that); see
    pm_send_then in node/client.c."""
    tilde = pid.find("~")
    mine = mint.find("~")
    if tilde < 0 or mine < 0 or (mine == tilde and pid[:tilde] == mint[:mine]):
        return "%s%x" % (mint, counter)
    return "%s~%s%x" % (pid[:tilde], mint, counter)


# ---- replies -------------------------------------------------------------------

def _envelope(frame, inside):
    try:
        e = Envelope.FromString(frame)
    except Exception:
        raise errors.ProtocolError("garbled frame of %d bytes from the agent" % len(frame))
    if e.version != WIRE_VERSION:
        raise errors.ProtocolError("frame of %d bytes with envelope version %d from the agent"
                                   % (len(frame), e.version))
    kind = e.WhichOneof("body")
    if kind not in ("reply", "invoke") and (inside or kind != "batch"):
        raise errors.ProtocolError("unexpected %s message from the agent%s"
                                   % (kind, " inside a batch" if inside else ""))
    return e


def decode(frame):
    """The Envelopes in a frame from the agent, in order: the frame's own, or
    those of the Batch it carries (we say batches in our hello: PROTOCOL.md
    section 2); ProtocolError when any of them is not a reply or invoke."""
    e = _envelope(frame, False)
    if e.WhichOneof("body") != "batch":
        return (e,)
    return tuple(_envelope(f, True) for f in e.batch.frames)


def check(reply):
    """The Reply of an envelope, or the exception it carries."""
    r = reply.reply
    if r.err:
        raise errors.error_for(r.err, r.message)
    return r


def check_value(max_value, value, reason=""):
    if max_value and (len(value) > max_value or len(reason) > max_value):
        raise errors.ValueTooLarge("value of %d bytes is larger than the agent accepts (%d)"
                                   % (max(len(value), len(reason)), max_value))
