'use strict';
// One session with the agent: a DEALER socket on ipc://PATH (lib/zmtp.js),
// the hello that leases an id prefix, a keep-alive ping, and the table of
// requests in flight. Shared by Client and Worker. A Connection never comes
// back once lost: its owner opens a new one (a new session).
//
// How a dead agent is noticed: the end of the stream (the kernel closes the
// agent's end when its process dies; whatever it sent before, an await's
// AGENT_SHUTTING_DOWN, is read first), ZMTP heartbeats (an agent that stops
// answering at all), and a deadline on every request (a sweep fails
// whatever is overdue). Any of these fails every request in flight with
// Unreachable. A frame that does not decode fails them with ProtocolError:
// whatever answers does not speak pmesh (or ZMTP).
const fs = require('fs');
const zmtp = require('./zmtp');
const {Envelope, WIRE_VERSION, decode, num} = require('./proto');
const errors = require('./errors');

const PING_MAX_MS = 400;
const SWEEP_MS = 100;
const HEARTBEAT_MS = 1000;
const HEARTBEAT_TIMEOUT_MS = 5000;
const MAX_FRAME = 64 * 1024 * 1024 + 64 * 1024; // PM_WIRE_MAX_FRAME

function unreachable(message) {
  return new errors.Unreachable(message);
}

// The Envelope in a frame from the agent (where: '' or ' inside a batch'),
// or ProtocolError; a batch inside a batch is one.
function envelopeOf(body, where) {
  let env;
  try {
    env = decode(body);
  } catch (e) {
    throw new errors.ProtocolError(`undecodable reply${where}: ` + e.message);
  }
  if (env.version !== WIRE_VERSION) {
    throw new errors.ProtocolError(`reply${where} of wire version ${env.version} (this client speaks ${WIRE_VERSION})`);
  }
  if (where && env.batch) throw new errors.ProtocolError('a batch inside a batch from the agent');
  return env;
}

class Connection {
  constructor(path, opts = {}) {
    this.path = path;
    this.name = opts.name || 'node';
    this.connectTimeoutMs = opts.connectTimeoutMs || 3000;
    this.onInvoke = opts.onInvoke || null;
    this.onLost = opts.onLost || null;
    this.lost = null; // the error it was lost with, once lost
    this.node = '';
    this.mintPrefix = '';
    this.session = 0;
    this.maxValue = 0;
    this.clientTimeoutMs = 0;
    this.nextReq = 0;
    this.nextMint = 0;
    this.pending = new Map(); // req id -> {resolve, reject, deadline}
    this.sock = null;
    this.pinger = null;
    this.sweeper = null;
    this._lostWaiters = [];
    this._graceful = false;
  }

  // Connects and says hello. Rejects with Unreachable (nothing answers, or
  // no socket at that path) or ProtocolError (something that is not an agent).
  async open() {
    let st;
    try {
      st = fs.statSync(this.path);
    } catch (e) {
      throw unreachable(`no agent socket at ${this.path} (${e.code})`);
    }
    if (!st.isSocket()) throw unreachable(`${this.path} is not a socket`);
    this.sock = new zmtp.Dealer(this.path, {
      maxFrame: MAX_FRAME,
      heartbeatMs: HEARTBEAT_MS,
      heartbeatTimeoutMs: HEARTBEAT_TIMEOUT_MS,
      onMessage: (body, frames) => this._onMessage(body, frames),
      onClose: (err, kind) => this._onClose(err, kind),
    });
    this.sweeper = setInterval(() => this._sweep(), SWEEP_MS);
    this.sweeper.unref();
    let r;
    try {
      r = await this.request('hello', {clientName: this.name, batches: true}, this.connectTimeoutMs);
    } catch (e) {
      this.fail(e);
      throw e instanceof errors.Unreachable ? e : unreachable(`hello failed: ${e.message}`);
    }
    this.node = r.node;
    this.mintPrefix = r.mintPrefix;
    this.session = num(r.session);
    this.maxValue = num(r.maxValue);
    this.clientTimeoutMs = num(r.clientTimeoutMs);
    if (!this.mintPrefix || !this.session) {
      const e = new errors.ProtocolError('hello reply without a session or id lease');
      this.fail(e);
      throw e;
    }
    // Ping at a quarter of the agent's client timeout, at most every 400 ms,
    // so that one lost ping never expires a live session.
    const period = this.clientTimeoutMs > 0 ? Math.min(PING_MAX_MS, Math.floor(this.clientTimeoutMs / 4)) : PING_MAX_MS;
    const ping = Envelope.encode({version: WIRE_VERSION, ping: {session: this.session}}).finish();
    this.pinger = setInterval(() => this._sendRaw(ping), Math.max(period, 10));
    this.pinger.unref();
    return this;
  }

  // Mints a promise id under the hello lease.
  mint() {
    return this.mintPrefix + (++this.nextMint).toString(16);
  }

  // The id of a promise chained on `id` (pm_send_then): it lives where `id`
  // lives, so when `id` belongs to another agent's id space it is minted as
  // <owner space>~<our lease><n>, which no other minter can produce.
  mintThen(id) {
    const tilde = id.indexOf('~');
    const mine = this.mintPrefix.indexOf('~');
    if (tilde < 0 || mine < 0 || (mine === tilde && id.startsWith(this.mintPrefix.slice(0, mine)))) {
      return this.mint();
    }
    return id.slice(0, tilde) + '~' + this.mintPrefix + (++this.nextMint).toString(16);
  }

  // Queues one message: what is queued in one turn of the event loop (and
  // the microtasks it runs) goes out in one write at its end.
  _sendRaw(buf) {
    if (this.lost) return;
    this.sock.send(buf);
  }

  // Sends one request; resolves to map(the agent's Reply) (the Reply itself
  // without map), rejects with the error it carries or map throws. limitMs
  // bounds the wait for the reply (Infinity: none, still failing when the
  // connection drops).
  request(key, body, limitMs, map) {
    if (this.lost) return Promise.reject(this.lost);
    const id = ++this.nextReq;
    const env = {version: WIRE_VERSION, reqId: id};
    env[key] = body;
    let buf;
    try {
      buf = Envelope.encode(env).finish();
    } catch (e) {
      return Promise.reject(new errors.BadRequest('cannot encode request: ' + e.message));
    }
    return new Promise((resolve, reject) => {
      this.pending.set(id, {resolve, reject, map, deadline: limitMs === Infinity ? Infinity : Date.now() + limitMs});
      this._sendRaw(buf);
    });
  }

  // Fire and forget (bye).
  notify(key, body) {
    const env = {version: WIRE_VERSION, reqId: ++this.nextReq};
    env[key] = body;
    this._sendRaw(Envelope.encode(env).finish());
  }

  _sweep() {
    if (this.lost || this.pending.size === 0) return;
    const now = Date.now();
    for (const [id, p] of this.pending) {
      if (p.deadline < now) {
        this.pending.delete(id);
        p.reject(unreachable('no reply from the agent in time'));
      }
    }
  }

  _onFrame(body, frames) {
    if (frames !== 1) throw new errors.ProtocolError(`reply of ${frames} frames`);
    const env = envelopeOf(body, '');
    if (!env.batch) {
      this._onEnvelope(env);
      return;
    }
    // What one turn of the agent had for us (we say batches in our hello):
    // each envelope as if it had come alone, in order (PROTOCOL.md 2).
    for (const inner of env.batch.frames || []) this._onEnvelope(envelopeOf(inner, ' inside a batch'));
  }

  _onEnvelope(env) {
    const reply = env.reply;
    if (reply) {
      const id = num(env.reqId);
      const p = this.pending.get(id);
      if (!p) return; // its caller gave up on it
      this.pending.delete(id);
      if (reply.err) {
        p.reject(errors.errorFor(reply.err, reply.message));
      } else if (p.map) {
        try {
          p.resolve(p.map(reply));
        } catch (e) {
          p.reject(e);
        }
      } else {
        p.resolve(reply);
      }
    } else if (env.invoke && this.onInvoke) {
      this.onInvoke(env.invoke);
    } else {
      throw new errors.ProtocolError(`unexpected message (${env.body || 'no body'}) from the agent`);
    }
  }

  // Each message the agent sends, as it is read (many per read, in one
  // synchronous loop).
  _onMessage(body, frames) {
    if (this.lost) return;
    try {
      this._onFrame(body, frames);
    } catch (e) {
      this.fail(e instanceof errors.PmeshError ? e : unreachable('receive failed: ' + e.message));
    }
  }

  _onClose(err, kind) {
    if (kind === 'closed' || this.lost) return;
    if (kind === 'connect') {
      this.fail(unreachable(`cannot connect to the agent at ${this.path}: ${err ? err.code || err.message : 'closed'}`));
    } else if (kind === 'protocol') {
      this.fail(new errors.ProtocolError(`not an agent at ${this.path}: ${err.message}`));
    } else if (kind === 'timeout') {
      this.fail(unreachable('the agent stopped answering (no heartbeat)'));
    } else {
      this.fail(unreachable('connection to the agent was lost' + (err ? ` (${err.code || err.message})` : '')));
    }
  }

  // Drops the connection: every request in flight fails with err.
  fail(err) {
    if (this.lost) return;
    this.lost = err;
    clearInterval(this.pinger);
    clearInterval(this.sweeper);
    const pending = this.pending;
    this.pending = new Map();
    for (const p of pending.values()) p.reject(err);
    if (this.sock) this.sock.close(this._graceful);
    for (const w of this._lostWaiters) w(err);
    this._lostWaiters = [];
    if (this.onLost) this.onLost(err);
  }

  // Resolves (with the error) once the connection is lost or closed.
  whenLost() {
    if (this.lost) return Promise.resolve(this.lost);
    return new Promise((resolve) => this._lostWaiters.push(resolve));
  }

  // Says bye (the agent closes the session) and closes.
  close() {
    if (this.lost) return;
    if (this.session) {
      this.notify('bye', {});
      this._graceful = true; // the bye (and what is queued before it) goes out
    }
    this.fail(unreachable('client closed'));
  }
}

module.exports = {Connection};
