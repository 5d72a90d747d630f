'use strict';
// Client: the promise API over one connection to the local agent. Every call
// returns a Promise and is sent at once: nothing waits for an earlier reply.
// Ids of new promises are minted locally under the session's lease, so the
// promise create() (or then()) returns can be passed straight to resolve(),
// then() or wait(), which go out right behind it, as libpmesh's pm_send_*.
const {Connection} = require('./connection');
const {STATES, STATE, num} = require('./proto');
const errors = require('./errors');
const {COMBINATORS, decodeValues, decodeOutcomes} = require('./fanin');
const {socketPath, duration, bytes, labelList, ownBytes} = require('./util');

const SLOT = Symbol('pmesh.id');
const CALL_TIMEOUT_MS = 30000;

function promiseOf(p) {
  const labels = {};
  for (const l of p.labels || []) labels[l.key] = l.value;
  return {
    id: p.id,
    state: STATES[p.state] || 'unknown',
    value: ownBytes(p.value),
    reason: p.reason || '',
    createdMs: num(p.createdMs),
    settledMs: num(p.settledMs),
    timeoutAtMs: num(p.timeoutAtMs),
    heartbeatMs: num(p.heartbeatMs),
    heartbeatAtMs: num(p.heartbeatAtMs),
    labels,
    idempotencyKey: p.idempotencyKey || '',
  };
}

function nothing() {
  return undefined;
}

// wait()'s answer: the value of a resolved promise (decoded by decode),
// else Rejected.
function outcome(reply, decode) {
  const p = reply.promise;
  if (!p) throw new errors.ProtocolError('await reply without a promise');
  if (p.state === STATE.resolved) return decode ? decode(ownBytes(p.value)) : ownBytes(p.value);
  throw new errors.Rejected(STATES[p.state] || 'unknown', p.reason || '', promiseOf(p));
}

class Client {
  // opts.socket: the agent's socket path (default $PMESH_SOCKET, then
  // /run/pmesh/agent.sock); opts.callTimeout: how long a call waits for its
  // reply before it calls the agent unreachable (default 30 s; a wait adds
  // its own timeout to it); opts.connectTimeout: for the hello (default 3 s).
  constructor(opts = {}) {
    this.socket = socketPath(opts.socket);
    this.callTimeoutMs = duration(opts.callTimeout, 'callTimeout') || CALL_TIMEOUT_MS;
    this.connectTimeoutMs = duration(opts.connectTimeout, 'connectTimeout') || 3000;
    this.name = opts.name || 'pmesh-node';
    // An idle connection (no call in flight or made for this long) is
    // closed, so that a client never keeps the process alive by itself; the
    // next call opens a new one. 0: keep it open until close().
    this.idleTimeoutMs = opts.idleTimeout === undefined ? 2000 : duration(opts.idleTimeout, 'idleTimeout');
    this._idle = null;
    this._conn = null; // open, not lost
    this._queue = null; // calls made while connecting: [issue, reject]
    this._closed = false;
  }

  // The agent's node name and limits, once connected (connect() or any call).
  get node() {
    return this._conn ? this._conn.node : '';
  }
  get maxValue() {
    return this._conn ? this._conn.maxValue : 0;
  }

  // Opens the session now (any call does it by itself when needed).
  // Resolves to nothing: a Client has a then() method, so a promise
  // resolved with it would take it for a thenable.
  async connect() {
    await this._call(() => null);
  }

  _open() {
    this._queue = [];
    const conn = new Connection(this.socket, {name: this.name, connectTimeoutMs: this.connectTimeoutMs});
    conn.open().then(() => {
      const q = this._queue;
      this._queue = null;
      if (this._closed) {
        conn.close();
        for (const [, reject] of q) reject(new errors.Unreachable('client closed'));
        return;
      }
      this._conn = conn;
      this._watchIdle(conn);
      for (const [issue] of q) issue(conn);
    }, (err) => {
      const q = this._queue;
      this._queue = null;
      for (const [, reject] of q) reject(err);
    });
  }

  // Runs issue(conn) on an open connection, now if there is one, else once
  // the new one is open (in call order). A lost connection is replaced.
  _call(issue) {
    if (this._closed) return Promise.reject(new errors.Unreachable('client closed'));
    const conn = this._conn;
    if (conn && !conn.lost) {
      try {
        return issue(conn);
      } catch (e) {
        return Promise.reject(e);
      }
    }
    this._conn = null;
    if (!this._queue) this._open();
    return new Promise((resolve, reject) => {
      this._queue.push([(c) => {
        try {
          resolve(issue(c));
        } catch (e) {
          reject(e);
        }
      }, reject]);
    });
  }

  _watchIdle(conn) {
    if (!this.idleTimeoutMs) return;
    let seen = -1;
    const t = setInterval(() => {
      if (conn.lost) {
        clearInterval(t);
      } else if (conn.pending.size === 0 && conn.nextReq === seen) {
        clearInterval(t);
        if (this._conn === conn) this._conn = null;
        conn.close();
      } else {
        seen = conn.nextReq;
      }
    }, this.idleTimeoutMs);
    t.unref();
  }

  _check(conn, value, what) {
    if (conn.maxValue && value.length > conn.maxValue) {
      throw new errors.ValueTooLarge(`${what} of ${value.length} bytes is larger than the agent accepts (${conn.maxValue})`);
    }
  }

  // The id a call names: a string, or what create() / then() returned
  // (whose id is minted by the time this call is issued, which is after it).
  _target(target, fn) {
    if (typeof target === 'string') return this._call((c) => fn(c, target));
    const slot = target && target[SLOT];
    if (slot && !slot.keyed) {
      return this._call((c) => {
        if (!slot.id) throw new errors.BadRequest('the promise this call names was never created');
        return fn(c, slot.id);
      });
    }
    if (target && typeof target.then === 'function') return Promise.resolve(target).then((id) => this._target(id, fn));
    return Promise.reject(new errors.BadRequest('a promise id is a string'));
  }

  _mark(p, slot) {
    p[SLOT] = slot;
    p.catch(() => {}); // passed on as an id, it may never be awaited itself
    return p;
  }

  // Creates a promise. opts: timeout, heartbeat (durations: ms or "30s"),
  // idempotencyKey, labels ({k: v}), token (true: resolves to {id, token,
  // created}, token being the settle token for an outside system or null
  // when the agent has none configured). Resolves to the id.
  create(opts = {}) {
    let timeoutMs, heartbeatMs;
    try {
      timeoutMs = duration(opts.timeout, 'timeout') || 0;
      heartbeatMs = duration(opts.heartbeat, 'heartbeat') || 0;
    } catch (e) {
      return Promise.reject(e);
    }
    const key = opts.idempotencyKey || '';
    const want = !!opts.token;
    const labels = labelList(opts.labels);
    const slot = {id: null, keyed: !!key};
    const p = this._call((c) => {
      // With an idempotency key the agent decides the id (it may be an
      // existing promise's), so that call waits for the reply.
      const id = key ? '' : c.mint();
      slot.id = id || null;
      return c.request('create', {id, timeoutMs, heartbeatMs, idempotencyKey: key, labels, wantToken: want},
                       this.callTimeoutMs, (r) => {
                         slot.id = r.id || id;
                         return want ? {id: slot.id, token: r.token || null, created: !!r.created} : slot.id;
                       });
    });
    return this._mark(p, slot);
  }

  _settle(target, kind, value, reason) {
    let v;
    try {
      v = bytes(value, 'value');
    } catch (e) {
      return Promise.reject(e);
    }
    const r = reason === undefined || reason === null ? '' : String(reason);
    return this._target(target, (c, id) => {
      this._check(c, v, 'value');
      this._check(c, Buffer.byteLength(r), 'reason');
      return c.request('settle', {id, kind, value: v, reason: r}, this.callTimeoutMs, nothing);
    });
  }

  resolve(id, value) {
    return this._settle(id, STATE.resolved, value, '');
  }

  reject(id, reason) {
    return this._settle(id, STATE.rejected, null, reason === undefined ? 'rejected' : reason);
  }

  cancel(id, reason) {
    return this._settle(id, STATE.canceled, null, reason || '');
  }

  heartbeat(id) {
    return this._target(id, (c, pid) => c.request('heartbeat', {id: pid}, this.callTimeoutMs, nothing));
  }

  // The promise as the agent holds it: {id, state, value, reason, ...}.
  get(id) {
    return this._target(id, (c, pid) => c.request('get', {id: pid}, this.callTimeoutMs, (r) => {
      if (!r.promise) throw new errors.ProtocolError('get reply without a promise');
      return promiseOf(r.promise);
    }));
  }

  // Waits until the promise settles: resolves to its value (a Buffer), or
  // rejects with Rejected (state, reason) if it was rejected, canceled or
  // timed out, or WaitTimeout if opts.timeout passes while it is pending.
  wait(id, opts = {}) {
    return this._wait(id, opts, null);
  }

  _wait(id, opts, decode) {
    let t;
    try {
      t = duration(opts.timeout, 'timeout');
    } catch (e) {
      return Promise.reject(e);
    }
    const timeoutMs = t === undefined ? -1 : t;
    const limit = timeoutMs < 0 ? Infinity : timeoutMs + this.callTimeoutMs;
    return this._target(id, (c, pid) => c.request('await', {id: pid, timeoutMs}, limit, (r) => outcome(r, decode)));
  }

  // Waits for an all() and resolves to its values in input order: a string
  // for each value that is UTF-8, a Buffer for the others. Rejects with
  // Rejected (its .failures names the failed input) or WaitTimeout.
  waitAll(id, opts = {}) {
    return this._wait(id, opts, decodeValues);
  }

  // Waits for an allSettled() and resolves to its outcomes:
  // [{state: 'resolved', value} | {state: 'rejected'|'canceled'|'timedout', reason}].
  waitAllSettled(id, opts = {}) {
    return this._wait(id, opts, decodeOutcomes);
  }

  // A combinator over ids (strings, or what create() / then() / all() ...
  // returned): a new promise, whose id this resolves to and which can be
  // passed on at once, like create()'s. It lives with this client's agent;
  // its inputs may live on any agents, and the same id twice counts twice.
  _combine(kind, ids, opts) {
    let timeoutMs;
    try {
      timeoutMs = duration(opts.timeout, 'timeout') || 0;
    } catch (e) {
      return Promise.reject(e);
    }
    if (!ids || typeof ids === 'string' || typeof ids[Symbol.iterator] !== 'function') {
      return Promise.reject(new errors.BadRequest(`${kind}: the inputs are an array of promise ids`));
    }
    const list = Array.from(ids);
    if (!list.length) return Promise.reject(new errors.BadRequest(`${kind}: no inputs`));
    const slot = {id: null, keyed: false};
    // Inputs whose id is minted by the time this call is issued (strings,
    // unkeyed create / then / combinators) keep the pipeline; others (keyed
    // creates, plain promises of ids) are awaited first.
    const known = (x) => typeof x === 'string' || (x && x[SLOT] && !x[SLOT].keyed);
    const issue = (c, resolved) => {
      const inputs = resolved || list.map((x) => (typeof x === 'string' ? x : x[SLOT].id));
      for (const i of inputs) {
        if (typeof i !== 'string' || !i) throw new errors.BadRequest(`${kind}: an input was never created or is not a promise id`);
      }
      const newId = c.mint();
      slot.id = newId;
      return c.request('combine', {kind: COMBINATORS[kind], ids: inputs, timeoutMs, newId},
                       this.callTimeoutMs, (r) => r.id || newId);
    };
    let p;
    if (list.every(known)) {
      p = this._call((c) => issue(c, null));
    } else {
      slot.keyed = true;
      p = Promise.all(list.map((x) => (typeof x === 'string' ? x : Promise.resolve(x))))
        .then((got) => this._call((c) => issue(c, got)));
    }
    return this._mark(p, slot);
  }

  // Resolves when every input resolved, with the list of their values
  // (waitAll() decodes it); rejects as soon as one fails.
  all(ids, opts = {}) {
    return this._combine('all', ids, opts);
  }

  // Resolves with the value of the first input to resolve; rejects when
  // every input failed (Rejected.failures lists them).
  any(ids, opts = {}) {
    return this._combine('any', ids, opts);
  }

  // Settles as the first input to settle.
  race(ids, opts = {}) {
    return this._combine('race', ids, opts);
  }

  // Resolves when every input settled, with each one's outcome
  // (waitAllSettled() decodes them).
  allSettled(ids, opts = {}) {
    return this._combine('allSettled', ids, opts);
  }

  // Chains `fn` (a function name a worker serves) on the promise: when it
  // resolves, fn runs on its value and settles the new promise, whose id
  // this resolves to (usable at once, like create()'s). opts.timeout bounds
  // the new promise; opts.onReject names a function run with the
  // promise's reason when it fails (rejected, canceled, timed out), whose
  // answer settles the new promise instead (a catch).
  then(id, fn, opts = {}) {
    if (typeof id === 'function') {
      // Called as a thenable (`await client`, or a promise resolved with a
      // client): refuse at once rather than hang.
      const e = new TypeError('a pmesh Client is not a promise: do not await it or resolve a promise with it');
      if (typeof fn === 'function') fn(e);
      return undefined;
    }
    let timeoutMs;
    try {
      timeoutMs = duration(opts.timeout, 'timeout') || 0;
    } catch (e) {
      return Promise.reject(e);
    }
    if (typeof fn !== 'string' || !fn) return Promise.reject(new errors.BadRequest('then: a function name is a non-empty string'));
    const onReject = opts.onReject === undefined || opts.onReject === null ? '' : opts.onReject;
    if (typeof onReject !== 'string') return Promise.reject(new errors.BadRequest('then: onReject is a function name'));
    const slot = {id: null, keyed: false};
    const p = this._target(id, (c, pid) => {
      const newId = c.mintThen(pid);
      slot.id = newId;
      return c.request('then', {id: pid, function: fn, newId, timeoutMs, onReject}, this.callTimeoutMs, (r) => r.id || newId);
    });
    // A then on a keyed create waits for the create's reply: its id is
    // not known before.
    if (!(typeof id === 'string' || (id && id[SLOT] && !id[SLOT].keyed))) slot.keyed = true;
    return this._mark(p, slot);
  }

  // One page of promises: opts {state, prefix, label: {k: v} or [k, v],
  // limit, cursor}. Resolves to {promises: [...], cursor} ("" on the last).
  list(opts = {}) {
    let state = 0;
    if (opts.state) {
      state = STATE[opts.state];
      if (!state) return Promise.reject(new errors.BadRequest(`list: unknown state ${opts.state}`));
    }
    const labels = labelList(opts.label ? (Array.isArray(opts.label) ? [opts.label] : opts.label) : null);
    const body = {state, prefix: opts.prefix || '', limit: opts.limit || 0, cursor: opts.cursor || ''};
    if (labels.length) body.label = labels[0];
    return this._call((c) => c.request('list', body, this.callTimeoutMs, (r) => ({
      promises: (r.promises || []).map(promiseOf),
      cursor: r.cursor || '',
    })));
  }

  // The agent's status (its JSON, parsed).
  status() {
    return this._call((c) => c.request('status', {}, this.callTimeoutMs, (r) => JSON.parse(r.json || '{}')));
  }

  // The mesh members as the agent sees them (parsed JSON array).
  members() {
    return this._call((c) => c.request('members', {}, this.callTimeoutMs, (r) => JSON.parse(r.json || '[]')));
  }

  // Closes the session (the agent drops its waits); calls in flight fail
  // with Unreachable. The client cannot be used afterwards.
  close() {
    this._closed = true;
    if (this._conn) this._conn.close();
    this._conn = null;
    return Promise.resolve();
  }
}

module.exports = {Client, SLOT, promiseOf};
