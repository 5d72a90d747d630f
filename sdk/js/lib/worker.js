'use strict';
// Worker: serves named functions for the agent. The agent sends an Invoke
// per call; the worker runs the function (at most `concurrency` at once in
// this process) and answers with a Result that resolves (or, if the function
// throws, rejects) the target promise.
//
// A worker outlives its agent: when the connection is lost (restart, crash)
// it connects again with capped exponential backoff and jitter, opens a new
// session and registers again. run() only ends with close() (or a
// registration the agent refuses as invalid).
const {EventEmitter} = require('events');
const {Connection} = require('./connection');
const errors = require('./errors');
const {socketPath, duration, bytes, ownBytes} = require('./util');

const CALL_TIMEOUT_MS = 30000;

class Worker extends EventEmitter {
  // opts: socket, concurrency (default 1), name, backoff {initial, max}
  // (durations, default 50 ms and 2 s), callTimeout.
  constructor(opts = {}) {
    super();
    this.socket = socketPath(opts.socket);
    this.concurrency = opts.concurrency === undefined ? 1 : opts.concurrency;
    if (!Number.isInteger(this.concurrency) || this.concurrency < 1) {
      throw new errors.BadRequest('concurrency is a positive integer');
    }
    this.name = opts.name || 'pmesh-node-worker';
    this.callTimeoutMs = duration(opts.callTimeout, 'callTimeout') || CALL_TIMEOUT_MS;
    const b = opts.backoff || {};
    this.backoffInitialMs = duration(b.initial, 'backoff.initial') || 50;
    this.backoffMaxMs = duration(b.max, 'backoff.max') || 2000;
    this.functions = new Map();
    this.running = 0; // invocations in flight
    this.sessions = 0; // sessions opened (registrations) so far
    this._queue = []; // [conn, invoke] waiting for a slot
    this._conn = null;
    this._closed = false;
    this._wake = null;
    this._idle = [];
    this._closing = null;
  }

  // Serves `name` with fn(input: Buffer, info) -> value (Buffer, Uint8Array,
  // string or nothing), sync or async. info: {function, targetId,
  // invocationId, attempt}.
  function(name, fn) {
    if (typeof name !== 'string' || !name) throw new TypeError('a function name is a non-empty string');
    if (typeof fn !== 'function') throw new TypeError('fn is a function');
    this.functions.set(name, fn);
    return this;
  }

  get node() {
    return this._conn ? this._conn.node : '';
  }

  // Serves until close(). Rejects only if the agent refuses the registration
  // itself (BadRequest: bad function names, too many; or no functions).
  async run() {
    if (!this.functions.size) throw new errors.BadRequest('a worker serves at least one function');
    let attempt = 0;
    while (!this._closed) {
      let conn = null;
      try {
        conn = new Connection(this.socket, {
          name: this.name,
          onInvoke: (inv) => this._onInvoke(conn, inv),
        });
        await conn.open();
        await conn.request('register', {functions: [...this.functions.keys()], concurrency: this.concurrency},
                           this.callTimeoutMs);
        if (this._closed) {
          conn.close();
          break;
        }
        this._conn = conn;
        this.sessions++;
        attempt = 0;
        this.emit('registered', {node: conn.node, session: conn.session});
        const err = await conn.whenLost();
        if (this._closed) break;
        this.emit('disconnected', err);
      } catch (e) {
        if (conn) conn.fail(e instanceof errors.PmeshError ? e : new errors.Unreachable(String(e)));
        if (e instanceof errors.BadRequest || e instanceof errors.LimitReached) throw e;
        if (this._closed) break;
        this.emit('retry', e);
      }
      this._conn = null;
      // The first try at once, then capped exponential backoff, each delay
      // drawn from [d/2, d] (as libpmesh's workers).
      if (attempt > 0) {
        const d = Math.min(this.backoffMaxMs, this.backoffInitialMs * 2 ** Math.min(attempt - 1, 20));
        await this._sleep(d / 2 + Math.random() * d / 2);
      }
      attempt++;
    }
    if (this._closing) await this._closing;
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this._wake = null;
        resolve();
      }, ms);
      this._wake = () => {
        clearTimeout(t);
        this._wake = null;
        resolve();
      };
    });
  }

  _onInvoke(conn, inv) {
    if (this._closed) return; // the agent gives it to another worker once we are gone
    if (this.running < this.concurrency) this._start(conn, inv);
    else this._queue.push([conn, inv]);
  }

  _start(conn, inv) {
    this.running++;
    const fn = this.functions.get(inv.function);
    const info = {function: inv.function, targetId: inv.targetId, invocationId: inv.invocationId, attempt: inv.attempt};
    const input = ownBytes(inv.input);
    let p;
    try {
      if (!fn) throw new Error(`this worker does not serve ${inv.function}`);
      p = Promise.resolve(fn(input, info));
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then((v) => {
      const value = bytes(v, 'result');
      if (conn.maxValue && value.length > conn.maxValue) {
        throw new errors.ValueTooLarge(`result of ${value.length} bytes is larger than the agent accepts (${conn.maxValue})`);
      }
      return {invocationId: inv.invocationId, ok: true, value};
    }).catch((e) => {
      const reason = (e && e.message) || String(e) || 'failed';
      return {invocationId: inv.invocationId, ok: false, reason};
    }).then((result) => {
      // A result for a lost session goes nowhere: the agent gives the
      // invocation to a live worker (or to us again, after a restart).
      if (conn.lost) return;
      return conn.request('result', result, this.callTimeoutMs).catch((e) => {
        if (!(e instanceof errors.Unreachable)) this.emit('warning', e);
      });
    }).finally(() => {
      this.running--;
      while (this.running < this.concurrency && this._queue.length) {
        const [c, next] = this._queue.shift();
        if (!c.lost) this._start(c, next);
      }
      if (this.running === 0) {
        for (const w of this._idle) w();
        this._idle = [];
      }
    });
  }

  _drain() {
    if (this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this._idle.push(resolve));
  }

  // Stops serving: takes no new invocations, lets those in flight finish
  // and answer (for at most opts.grace, default 10 s), then closes the
  // session (the agent gives anything else it held for us to other workers).
  // run() resolves after that.
  close(opts = {}) {
    if (this._closing) return this._closing;
    this._closed = true;
    this._queue = [];
    if (this._wake) this._wake();
    const grace = duration(opts.grace, 'grace');
    this._closing = (async () => {
      let t;
      await Promise.race([this._drain(), new Promise((r) => {
        t = setTimeout(r, grace === undefined ? 10000 : grace);
      })]);
      clearTimeout(t);
      if (this._conn) this._conn.close();
    })();
    return this._closing;
  }
}

module.exports = {Worker};
