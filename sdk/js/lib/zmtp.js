'use strict';
// A ZeroMQ DEALER socket in plain JavaScript: ZMTP 3.1 (rfc.zeromq.org
// spec 37, the framing libzmq speaks) with the NULL mechanism over a
// unix-domain stream socket, which is what ipc://PATH is. It is all the SDK
// needs of ZeroMQ to talk to its agent (a ROUTER on ipc://PATH without
// CURVE): one peer, single-frame messages, heartbeats, no reconnection (a
// Connection is one session; its owner opens a new one).
//
// Why not zeromq.js: it costs a native call, a promise and a copy per
// message and per reply, plus a wake-up of libzmq's I/O thread, which was
// most of the SDK's time. Here the messages queued during one turn of the
// event loop go out in one write, and the replies one read returns are
// decoded in one synchronous loop.
//
// On the wire, as libzmq: a 64-byte greeting (signature, version 3.1,
// mechanism NULL, as-server 0), then a READY command each way (our
// Socket-Type DEALER with an empty Identity; the peer's must be a ROUTER or
// a DEALER, the types a DEALER may talk to), then frames: a flags byte (MORE
// 1, LONG 2, COMMAND 4), a size (one byte, or eight big-endian with LONG)
// and the body. A PING command from the peer is answered with a PONG; we
// send a PING every heartbeatMs and give up on a peer that sent nothing in
// the heartbeatTimeoutMs after one (as ZMQ_HEARTBEAT_IVL and
// ZMQ_HEARTBEAT_TIMEOUT). Unlike libzmq's I/O thread, this runs on the
// event loop: a loop blocked for longer than that (a long synchronous
// computation) must not look like a dead peer, so the verdict waits until
// after the loop's next poll phase has read whatever arrived meanwhile.
const net = require('net');

const GREETING_SIZE = 64;
const MORE = 1;
const LONG = 2;
const COMMAND = 4;
// A frame body at least this large that has not all arrived yet gets a
// buffer of its own, filled as it comes (no quadratic re-concatenation).
const BIG_FRAME = 64 * 1024;
// Bodies at least this large are written on their own, not copied into the
// batch.
const COPY_MAX = 16 * 1024;

function greeting() {
  const g = Buffer.alloc(GREETING_SIZE);
  g[0] = 0xff; // signature: 0xff, 8 bytes of padding, 0x7f
  g[9] = 0x7f;
  g[10] = 3; // version 3.1
  g[11] = 1;
  g.write('NULL', 12, 'latin1'); // mechanism, zero-padded to 20 bytes
  g[32] = 0; // as-server: we are the client
  return g;
}

function command(name, data) {
  const body = Buffer.concat([Buffer.from([name.length]), Buffer.from(name, 'latin1'), data]);
  return frameOf(COMMAND, body);
}

function property(name, value) {
  const v = Buffer.from(value, 'latin1');
  const p = Buffer.alloc(1 + name.length + 4 + v.length);
  p[0] = name.length;
  p.write(name, 1, 'latin1');
  p.writeUInt32BE(v.length, 1 + name.length);
  v.copy(p, 1 + name.length + 4);
  return p;
}

function frameOf(flags, body) {
  return Buffer.concat([header(flags, body.length), body]);
}

function header(flags, size) {
  if (size <= 255) return Buffer.from([flags, size]);
  const h = Buffer.allocUnsafe(9);
  h[0] = flags | LONG;
  h.writeUInt32BE(Math.floor(size / 2 ** 32), 1);
  h.writeUInt32BE(size >>> 0, 5);
  return h;
}

const GREETING = greeting();
const READY = command('READY', Buffer.concat([property('Socket-Type', 'DEALER'), property('Identity', '')]));
const PING = command('PING', Buffer.from([0, 0])); // TTL 0, no context (as libzmq without ZMQ_HEARTBEAT_TTL)

// The properties of a READY command's body (after its name).
function properties(buf) {
  const props = {};
  let off = 0;
  while (off < buf.length) {
    const n = buf[off];
    if (off + 1 + n + 4 > buf.length) throw new Error('truncated property');
    const name = buf.toString('latin1', off + 1, off + 1 + n);
    const len = buf.readUInt32BE(off + 1 + n);
    off += 1 + n + 4;
    if (off + len > buf.length) throw new Error('truncated property value');
    props[name.toLowerCase()] = buf.toString('latin1', off, off + len);
    off += len;
  }
  return props;
}

class Dealer {
  // path: the unix socket. opts: maxFrame (a larger incoming frame is a
  // protocol error), heartbeatMs, heartbeatTimeoutMs, and the callbacks
  // onMessage(body, frames) (each message, synchronously; body is its
  // first frame, a view into the read buffer, valid during the call;
  // frames its number of frames) and onClose(err, kind) (once: kind is
  // 'connect' (never connected), 'protocol' (the peer does not speak
  // ZMTP as expected), 'lost' (the connection ended or failed), 'timeout'
  // (no heartbeat), or 'closed' (close() was called)). Nothing is read or
  // delivered after onClose.
  constructor(path, opts) {
    this.path = path;
    this.maxFrame = opts.maxFrame;
    this.onMessage = opts.onMessage;
    this.onClose = opts.onClose;
    this.closed = false;
    this._ready = false; // handshake done: messages may go
    this._greeted = false;
    this._outq = []; // message bodies to send at the end of this turn
    this._scheduled = false;
    this._flush = () => this.flush();
    this._rest = null; // bytes of an incomplete frame (or greeting)
    this._big = null; // {buf, off, flags}: a large frame being filled
    this._parts = 0; // frames of the message being received, before this one
    this._first = null; // its first frame
    this._pingOut = 0; // when the PING not answered yet went out (0: none)
    this._pings = true; // false for a ZMTP 3.0 peer, which knows no PING
    this._sock = net.createConnection({path});
    this._sock.on('connect', () => this._sock.write(GREETING));
    this._sock.on('data', (chunk) => this._onData(chunk));
    this._sock.on('error', (e) => {
      this._end(this._ready || this._greeted ? 'lost' : 'connect', e);
    });
    this._sock.on('close', () => this._end('lost', null));
    const hb = opts.heartbeatMs || 0;
    const timeout = opts.heartbeatTimeoutMs || 0;
    this._beat = null;
    if (hb > 0) {
      // Runs after the poll phase (setImmediate), when what the peer sent
      // while the loop was busy has been read (and cleared _pingOut).
      const verdict = () => {
        if (!this.closed && this._pingOut && Date.now() - this._pingOut > timeout) this._end('timeout', null);
      };
      this._beat = setInterval(() => {
        if (!this._pings || !this._ready) return; // (the hello's deadline covers the handshake)
        if (this._pingOut === 0) {
          this._pingOut = Date.now();
          this._sock.write(PING);
        } else if (timeout > 0 && Date.now() - this._pingOut > timeout) {
          setImmediate(verdict);
        }
      }, hb);
      this._beat.unref();
    }
  }

  // Queues one single-frame message; what is queued in one turn goes out
  // in one write at its end (process.nextTick), in order.
  send(body) {
    if (this.closed) return;
    this._outq.push(body);
    if (!this._scheduled && this._ready) {
      this._scheduled = true;
      process.nextTick(this._flush);
    }
  }

  // Writes what is queued now.
  flush() {
    this._scheduled = false;
    const q = this._outq;
    if (q.length === 0 || this.closed || !this._ready) return;
    this._outq = [];
    let total = 0;
    for (let i = 0; i < q.length; i++) {
      const n = q[i].length;
      total += n < COPY_MAX ? n + (n <= 255 ? 2 : 9) : 0;
    }
    const sock = this._sock;
    if (total === 0 && q.length === 1) {
      // One large message: its header, then the body as it is.
      sock.write(header(0, q[0].length));
      sock.write(q[0]);
      return;
    }
    let batch = total > 0 ? Buffer.allocUnsafe(total) : null;
    let off = 0;
    let corked = false;
    for (let i = 0; i < q.length; i++) {
      const b = q[i];
      const n = b.length;
      if (n < COPY_MAX) {
        if (n <= 255) {
          batch[off] = 0;
          batch[off + 1] = n;
          off += 2;
        } else {
          batch[off] = LONG;
          batch.writeUInt32BE(0, off + 1);
          batch.writeUInt32BE(n, off + 5);
          off += 9;
        }
        b.copy(batch, off);
        off += n;
      } else {
        // A large body goes on its own, after what is batched before it.
        if (!corked) {
          sock.cork();
          corked = true;
        }
        if (off > 0) {
          sock.write(batch.subarray(0, off));
          batch = batch.subarray(off);
          off = 0;
        }
        sock.write(header(0, n));
        sock.write(b);
      }
    }
    if (off > 0) sock.write(batch.subarray(0, off));
    if (corked) sock.uncork();
  }

  // Closes. graceful: what is queued goes out first and the socket is
  // half-closed (the peer reads it all, as libzmq with a linger), then
  // destroyed after lingerMs at most.
  close(graceful, lingerMs = 100) {
    if (this.closed) return;
    if (graceful && this._ready) {
      this.flush();
      this._sock.end();
      setTimeout(() => this._sock.destroy(), lingerMs).unref();
      this._end('closed', null, true);
    } else {
      this._end('closed', null);
    }
  }

  _end(kind, err, keepSocket = false) {
    if (this.closed) return;
    this.closed = true;
    this._outq = [];
    this._rest = null;
    this._big = null;
    this._first = null;
    if (this._beat) clearInterval(this._beat);
    if (!keepSocket) this._sock.destroy();
    this.onClose(err, kind);
  }

  _protocol(message) {
    this._end('protocol', new Error(message));
  }

  _onData(chunk) {
    if (this.closed) return;
    this._pingOut = 0; // anything from the peer answers a PING
    let buf = chunk;
    if (this._big) {
      const big = this._big;
      const take = Math.min(big.buf.length - big.off, chunk.length);
      chunk.copy(big.buf, big.off, 0, take);
      big.off += take;
      if (big.off < big.buf.length) return;
      this._big = null;
      this._frame(big.flags, big.buf);
      if (this.closed) return;
      buf = chunk.subarray(take);
    } else if (this._rest) {
      buf = Buffer.concat([this._rest, chunk]);
      this._rest = null;
    }
    const n = buf.length;
    let off = 0;
    if (!this._greeted) {
      if (n < GREETING_SIZE) {
        // The signature is checked as soon as it is there: whatever
        // answers otherwise is not ZeroMQ.
        if (n >= 10 && (buf[0] !== 0xff || !(buf[9] & 1))) return this._protocol('the peer does not speak ZMTP');
        this._rest = buf;
        return;
      }
      if (buf[0] !== 0xff || !(buf[9] & 1)) return this._protocol('the peer does not speak ZMTP');
      if (buf[10] < 3) return this._protocol(`the peer speaks ZMTP ${buf[10]}.x, not 3`);
      const mech = buf.toString('latin1', 12, 32).replace(/\0+$/, '');
      if (mech !== 'NULL') return this._protocol(`the peer wants the ${mech} mechanism, not NULL`);
      this._greeted = true;
      this._pings = buf[10] > 3 || buf[11] >= 1;
      this._sock.write(READY);
      off = GREETING_SIZE;
    }
    while (off < n) {
      const flags = buf[off];
      let size;
      let hdr;
      if (flags & LONG) {
        if (n - off < 9) break;
        const hi = buf.readUInt32BE(off + 1);
        size = hi * 2 ** 32 + buf.readUInt32BE(off + 5);
        hdr = 9;
      } else {
        if (n - off < 2) break;
        size = buf[off + 1];
        hdr = 2;
      }
      if (flags & 0xf8) return this._protocol(`frame with reserved flags 0x${flags.toString(16)}`);
      if (size > this.maxFrame) return this._protocol(`frame of ${size} bytes (the limit is ${this.maxFrame})`);
      const start = off + hdr;
      if (n - start < size) {
        if (size >= BIG_FRAME) {
          const big = Buffer.allocUnsafe(size);
          buf.copy(big, 0, start, n);
          this._big = {buf: big, off: n - start, flags};
          return;
        }
        break;
      }
      off = start + size;
      this._frame(flags, buf.subarray(start, off));
      if (this.closed) return;
    }
    if (off < n) this._rest = buf.subarray(off);
  }

  _frame(flags, body) {
    if (flags & COMMAND) return this._command(body);
    if (!this._ready) return this._protocol('a message before the handshake');
    if (flags & MORE) {
      if (this._parts++ === 0) this._first = body;
      return;
    }
    if (this._parts === 0) {
      this.onMessage(body, 1);
    } else {
      const first = this._first;
      const frames = this._parts + 1;
      this._parts = 0;
      this._first = null;
      this.onMessage(first, frames);
    }
  }

  _command(body) {
    const len = body.length ? body[0] : 0;
    if (!len || len + 1 > body.length) return this._protocol('malformed command');
    const name = body.toString('latin1', 1, 1 + len);
    const data = body.subarray(1 + len);
    if (name === 'PING') {
      // PONG echoes the context (what follows the 2-byte TTL).
      if (this._ready) this._sock.write(command('PONG', data.subarray(Math.min(2, data.length))));
    } else if (name === 'PONG') {
      // reading it cleared _pingOut: all it is for
    } else if (name === 'READY') {
      if (this._ready) return this._protocol('a second READY');
      let props;
      try {
        props = properties(data);
      } catch (e) {
        return this._protocol('malformed READY: ' + e.message);
      }
      const type = props['socket-type'];
      if (type !== 'ROUTER' && type !== 'DEALER') return this._protocol(`the peer is a ${type || 'socket of no type'}, not a ROUTER`);
      this._ready = true;
      if (this._outq.length && !this._scheduled) {
        this._scheduled = true;
        process.nextTick(this._flush);
      }
    } else if (name === 'ERROR') {
      const n = data.length ? data[0] : 0;
      return this._protocol('the peer refused the connection: ' + data.toString('latin1', 1, 1 + n));
    }
    // Any other command: ignored (as libzmq does with ones it does not know).
  }
}

module.exports = {Dealer};
