'use strict';
// One error class per pm_err code of node/pmesh.h, under PmeshError. `code`
// is the negative pm_err number (as in the C library and the Python SDK),
// `errorName` its stable upper-case name ("NOT_FOUND").

class PmeshError extends Error {
  constructor(message, code, errorName) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.errorName = errorName;
  }
}

const CODES = [
  // [class name, code, NAME, default message]
  ['Internal', -1, 'INTERNAL', 'internal error'],
  ['NotFound', -2, 'NOT_FOUND', 'no promise with that id'],
  ['AlreadySettled', -3, 'ALREADY_SETTLED', 'promise already settled with another outcome'],
  ['TimedOut', -4, 'TIMED_OUT', 'promise timed out'],
  ['ValueTooLarge', -5, 'VALUE_TOO_LARGE', 'value is larger than the agent accepts'],
  ['BadRequest', -6, 'BAD_REQUEST', 'malformed or invalid request'],
  ['AgentShuttingDown', -7, 'AGENT_SHUTTING_DOWN', 'the agent is shutting down'],
  ['WaitTimeout', -8, 'WAIT_TIMEOUT', 'wait timed out while the promise is pending'],
  ['Unreachable', -9, 'UNREACHABLE', 'the agent cannot be reached'],
  ['BadVersion', -10, 'BAD_VERSION', 'wire version not supported'],
  ['NotHolder', -11, 'NOT_HOLDER', 'invocation is not held by this worker'],
  ['LimitReached', -12, 'LIMIT', 'limit reached'],
  ['OwnerLost', -13, 'OWNER_LOST', "the promise's owner is lost"],
  ['NoSession', -14, 'NO_SESSION', 'no session: say hello first'],
  ['Unavailable', -15, 'UNAVAILABLE', 'the id space is unavailable: its in-sync copies cannot be reached or too few are in sync'],
  ['NotSettleable', -16, 'NOT_SETTLEABLE', 'a combinator is settled only by its inputs'],
];

const classes = {};
const byCode = new Map();
for (const [cls, code, errorName, dflt] of CODES) {
  // A named class per code, so `instanceof NotFound` and err.name both work.
  const C = {
    [cls]: class extends PmeshError {
      constructor(message) {
        super(message || dflt, code, errorName);
      }
    },
  }[cls];
  C.code = code;
  C.errorName = errorName;
  classes[cls] = C;
  byCode.set(code, C);
}

// The agent's answer could not be decoded: whatever listens there does not
// speak pmesh's wire format. The connection is dropped; an Unreachable.
class ProtocolError extends classes.Unreachable {
  constructor(message) {
    super(message || 'malformed reply from the agent');
    this.name = 'ProtocolError';
  }
}

// wait() on a promise that was rejected, canceled or timed out. `state` is
// "rejected", "canceled" or "timedout"; `reason` the promise's reason;
// `promise` the whole promise as get() returns it. For a rejected all() or
// any(), `failures` lists the failed inputs ({id, state, reason}); else [].
class Rejected extends PmeshError {
  constructor(state, reason, promise) {
    super(`promise ${state}${reason ? ': ' + reason : ''}`, 0, 'REJECTED');
    this.state = state;
    this.reason = reason || '';
    this.promise = promise;
  }

  get failures() {
    return require('./fanin').decodeFailures(this.reason);
  }
}

function errorFor(code, message) {
  const C = byCode.get(code) || classes.Internal;
  const e = new C(message || undefined);
  if (!byCode.has(code)) e.message = `unknown error ${code}${message ? ': ' + message : ''}`;
  return e;
}

module.exports = {PmeshError, ProtocolError, Rejected, errorFor, Limit: classes.LimitReached,
                  ...classes};
