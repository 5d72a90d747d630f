'use strict';
// One session with the agent: a DEALER socket on ipc://PATH, the hello that
// leases an id prefix, a keep-alive ping, and the table of requests in
// flight. Shared by Client and Worker. A Connection never comes back once
// lost: its owner opens a new one (a new session).
//
// How a dead agent is noticed: the socket monitor's "disconnect" event (the
// kernel closes the agent's end when its process dies), ZMTP heartbeats (an
// agent that stops answering at all), and a deadline on every request (a
// sweep fails whatever is overdue). Any of these fails every request in
// flight with Unreachable. A frame that does not decode fails them with
// ProtocolError: whatever answers does not speak pmesh.
const fs = require('fs');
const zmq = require('zeromq');
const {Envelope, WIRE_VERSION, decode, num} = require('./proto');
const errors = require('./errors');

const PING_MAX_MS = 400;
const SWEEP_MS = 100;
const DRAIN_AT = 16; // requests in flight from which replies are read in batches
const MAX_FRAME = 64 * 1024 * 1024 + 64 * 1024; // PM_WIRE_MAX_FRAME

function unreachable(message) {
  return new errors.Unreachable(message);
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
    this._sendFailed = (err) => this.fail(unreachable('send to the agent failed: ' + err.message));
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
    const hb = 1000;
    this.sock = new zmq.Dealer({
      linger: 0,
      sendHighWaterMark: 1000000,
      receiveHighWaterMark: 1000000,
      sendTimeout: 0, // sends never block: the high-water mark is out of reach
      // One connection is one session: it must not reconnect by itself to a
      // restarted agent (which would take the next message for a new,
      // hello-less session); the owner opens a new Connection instead. Not
      // -1 (no reconnect), though: then libzmq tears the session down at the
      // disconnect and drops replies that arrived but were not read yet (an
      // await's AGENT_SHUTTING_DOWN). A 10 s interval keeps them readable,
      // and this connection is closed long before it would reconnect.
      reconnectInterval: 10000,
      maxMessageSize: MAX_FRAME,
      heartbeatInterval: hb,
      heartbeatTimeout: 5 * hb,
    });
    // On disconnect, what the agent sent before it went (an await's
    // AGENT_SHUTTING_DOWN) is read first: the failure comes a moment later.
    this.sock.events.on('disconnect', () => {
      setTimeout(() => this.fail(unreachable('connection to the agent was lost')), 50);
    });
    this.sock.connect('ipc://' + this.path);
    this._receive();
    this.sweeper = setInterval(() => this._sweep(), SWEEP_MS);
    this.sweeper.unref();
    let r;
    try {
      r = await this.request('hello', {clientName: this.name}, this.connectTimeoutMs);
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

  _sendRaw(buf) {
    if (this.lost) return;
    try {
      this.sock.send(buf).catch(this._sendFailed);
    } catch (e) {
      this._sendFailed(e);
    }
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

  _onFrame(frames) {
    if (frames.length !== 1) throw new errors.ProtocolError(`reply of ${frames.length} frames`);
    let env;
    try {
      env = decode(frames[0]);
    } catch (e) {
      throw new errors.ProtocolError('undecodable reply: ' + e.message);
    }
    if (env.version !== WIRE_VERSION) {
      throw new errors.ProtocolError(`reply of wire version ${env.version} (this client speaks ${WIRE_VERSION})`);
    }
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

  // Reads replies: a blocking receive for the first, then, when many are in
  // flight, everything already there without waiting (a receive with
  // timeout 0 skips the poll; the EAGAIN that ends the batch costs one
  // exception per batch).
  async _receive() {
    const sock = this.sock;
    try {
      for (;;) {
        this._onFrame(await sock.receive());
        if (this.lost) return;
        // Few replies to come: block for the next (a drain that finds
        // nothing costs more than it saves).
        if (this.pending.size < DRAIN_AT) continue;
        sock.receiveTimeout = 0;
        let idled = false;
        for (;;) {
          let frames;
          try {
            frames = await sock.receive();
          } catch (e) {
            if (e.code === 'EAGAIN' && !sock.closed) {
              // Nothing there now: let the callers run (and send) before
              // the receive goes back to the poller, where every send
              // would cost a ZMQ_EVENTS check; then look once more.
              if (!idled) {
                idled = true;
                await new Promise(setImmediate);
                if (this.lost) return;
                continue;
              }
              sock.receiveTimeout = -1;
              break;
            }
            throw e;
          }
          this._onFrame(frames);
          if (this.lost) return;
        }
      }
    } catch (e) {
      if (this.lost) return;
      this.fail(e instanceof errors.PmeshError ? e : unreachable('receive failed: ' + e.message));
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
    try {
      this.sock.events.removeAllListeners?.();
    } catch (e) { /* already closed */ }
    try {
      this.sock.close();
    } catch (e) { /* already closed */ }
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
      try {
        this.sock.linger = 100; // let the bye out, and nothing else
      } catch (e) { /* closed */ }
    }
    this.fail(unreachable('client closed'));
  }
}

module.exports = {Connection};
