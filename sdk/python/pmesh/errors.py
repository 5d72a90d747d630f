"""Exceptions of pmesh: one class per error code of the agent (node/pmesh.h's
pm_err), all under PmeshError, plus Rejected for a promise that settled other
than resolved and ProtocolError for an agent that answers garbage."""

__all__ = [
    "PmeshError", "Internal", "NotFound", "AlreadySettled", "TimedOut", "ValueTooLarge",
    "BadRequest", "AgentShuttingDown", "WaitTimeout", "Unreachable", "BadVersion",
    "NotHolder", "LimitReached", "OwnerLost", "NoSession", "Unavailable", "NotSettleable", "Rejected", "ProtocolError",
    "error_for",
]


class PmeshError(Exception):
    """Base of every pmesh error. `code` is the negative pm_err number (0 for
    Rejected), `name` its stable upper-case name, `message` the agent's words."""

    code = -1
    name = "INTERNAL"
    default_message = "internal error"

    def __init__(self, message=None):
        self.message = message or self.default_message
        super().__init__(self.message)

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.message)


class Internal(PmeshError):
    code, name, default_message = -1, "INTERNAL", "internal error"


class NotFound(PmeshError):
    code, name, default_message = -2, "NOT_FOUND", "no promise with that id"


class AlreadySettled(PmeshError):
    code, name, default_message = -3, "ALREADY_SETTLED", "promise already settled"


class TimedOut(PmeshError):
    """Settling a promise that timed out (the promise is TIMEDOUT)."""
    code, name, default_message = -4, "TIMED_OUT", "promise timed out"


class ValueTooLarge(PmeshError):
    code, name, default_message = -5, "VALUE_TOO_LARGE", "value is larger than the agent accepts"


class BadRequest(PmeshError):
    code, name, default_message = -6, "BAD_REQUEST", "malformed or invalid request"


class AgentShuttingDown(PmeshError):
    code, name, default_message = -7, "AGENT_SHUTTING_DOWN", "the agent is shutting down"


class WaitTimeout(PmeshError):
    """A wait ended while the promise is still pending."""
    code, name, default_message = -8, "WAIT_TIMEOUT", "wait timed out; promise still pending"


class Unreachable(PmeshError):
    """The agent cannot be reached (no socket, it died, no reply in time)."""
    code, name, default_message = -9, "UNREACHABLE", "the agent cannot be reached"


class BadVersion(PmeshError):
    code, name, default_message = -10, "BAD_VERSION", "unsupported envelope version"


class NotHolder(PmeshError):
    code, name, default_message = -11, "NOT_HOLDER", "invocation not held by this worker"


class LimitReached(PmeshError):
    code, name, default_message = -12, "LIMIT", "a limit was reached"


class OwnerLost(PmeshError):
    code, name, default_message = -13, "OWNER_LOST", "the promise's owner died and nobody took over"


class NoSession(PmeshError):
    code, name, default_message = -14, "NO_SESSION", "request needs a session first"


class Unavailable(PmeshError):
    """The promise's id space cannot serve this now: its in-sync copies cannot
    be reached, or too few backups are in sync to accept a write (the message
    says which). Nothing was applied; retrying later makes sense."""
    code, name, default_message = -15, "UNAVAILABLE", "the id space is unavailable"


class NotSettleable(PmeshError):
    """Settling a combinator (all, any, race, all_settled): only its inputs
    settle it."""
    code, name, default_message = -16, "NOT_SETTLEABLE", "a combinator is settled only by its inputs"


class ProtocolError(Unreachable):
    """The agent's answer could not be decoded (not pmesh's wire format). The
    connection is dropped, so it is a kind of Unreachable: retrying makes sense."""
    name, default_message = "UNREACHABLE", "garbled reply from the agent"


class Rejected(PmeshError):
    """wait() on a promise that settled but not resolved: `state` is
    "rejected", "canceled" or "timedout", `reason` says why, `promise` is the
    whole Promise. For a rejected all() or any(), `failures` lists the failed
    inputs (pmesh.Failure: id, state, reason); else it is []."""

    code, name = 0, "REJECTED"

    @property
    def failures(self):
        from ._common import decode_failures
        return decode_failures(self.reason)

    def __init__(self, promise):
        self.promise = promise
        self.state = promise.state
        self.reason = promise.reason
        super().__init__("promise %s %s%s" % (promise.id, self.state,
                                              ": " + self.reason if self.reason else ""))


_BY_CODE = {c.code: c for c in (Internal, NotFound, AlreadySettled, TimedOut, ValueTooLarge,
                                BadRequest, AgentShuttingDown, WaitTimeout, Unreachable,
                                BadVersion, NotHolder, LimitReached, OwnerLost, NoSession,
                                Unavailable, NotSettleable)}


def error_for(code, message=""):
    """The exception for a pm_err code (an unknown code gives Internal)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return Internal("unknown error %d%s" % (code, ": " + message if message else ""))
    return cls(message or None)
