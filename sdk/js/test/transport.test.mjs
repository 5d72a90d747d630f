// The transport (lib/zmtp.js, ZMTP 3.1 in JavaScript) against a real agent
// and against peers that are not one: large frames both ways, split across
// reads and mixed with small ones in one write; a stopped agent noticed by
// the heartbeat; a peer that is not ZeroMQ; a libzmq peer's PINGs answered.
import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import path from 'node:path';
import {Router} from 'zeromq';
import pmesh from '../lib/index.js';
import {Envelope} from '../lib/proto.js';
import {haveBuild, startAgent, tmpdir, until} from './agents.mjs';

const skip = haveBuild ? false : 'no build/bin/pmeshd (make -j2 all first)';
const dir = tmpdir('sdk-node-transport');
const closers = [];
after(async () => {
  for (const f of closers.reverse()) await f();
});

test('large values go both ways (long frames, split reads), mixed with small ones in one write', {skip}, async () => {
  const a = await startAgent(dir, 'n-large', ['--max-value-bytes', String(8 << 20)]);
  closers.push(() => a.stop());
  const c = new pmesh.Client({socket: a.socket});
  closers.push(() => c.close());
  const big = (n, seed) => {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
    return b;
  };
  // Sizes on each side of the frame-size and batching thresholds.
  const sizes = [0, 1, 255, 256, 16 * 1024 - 1, 16 * 1024, 64 * 1024, 200 * 1024, 3 << 20, 8 << 20];
  const values = sizes.map((n, i) => big(n, i));
  // All in one turn: the creates, resolves and waits of every size, and
  // small lifecycles between them, go out in one batch of writes.
  const small = [];
  const waits = values.map((v) => {
    const id = c.create();
    c.resolve(id, v);
    const id2 = c.create();
    c.resolve(id2, 'small');
    small.push(c.wait(id2));
    return Promise.all([id, c.wait(id)]);
  });
  const got = await Promise.all(waits);
  for (let i = 0; i < sizes.length; i++) {
    assert.equal(got[i][1].length, sizes[i], `value of ${sizes[i]} bytes`);
    assert.ok(got[i][1].equals(values[i]), `value of ${sizes[i]} bytes comes back intact`);
    const p = await c.get(got[i][0]);
    assert.ok(p.value.equals(values[i]), `get of ${sizes[i]} bytes`);
  }
  for (const v of await Promise.all(small)) assert.equal(v.toString(), 'small');
});

test('an agent that stops answering (SIGSTOP): Unreachable by the heartbeat, long before the call timeout', {skip}, async () => {
  const a = await startAgent(dir, 'n-stopped');
  closers.push(async () => {
    try {
      process.kill(a.pid, 'SIGCONT');
    } catch (e) { /* gone */ }
    await a.stop();
  });
  const c = new pmesh.Client({socket: a.socket, callTimeout: '60s'});
  closers.push(() => c.close());
  const id = await c.create();
  process.kill(a.pid, 'SIGSTOP');
  const t0 = Date.now();
  const e = await c.wait(id).then(() => null, (err) => err);
  const took = Date.now() - t0;
  assert.ok(e instanceof pmesh.Unreachable, String(e));
  assert.match(e.message, /heartbeat/);
  assert.ok(took >= 3000 && took < 15000, `noticed after ${took} ms`);
  process.kill(a.pid, 'SIGCONT');
  // The next call opens a new session with the agent, which runs again.
  await c.resolve(id, 'after');
  assert.equal((await c.wait(id)).toString(), 'after');
});

test('an event loop blocked for longer than the heartbeat timeout keeps its session', {skip}, async () => {
  // The agent's own client timeout (pings every 400 ms) is set long: what is
  // tested is that our heartbeat, which runs on the blocked loop, reads the
  // PONG that arrived meanwhile before it calls the agent dead.
  const a = await startAgent(dir, 'n-busy', ['--client-timeout', '60s']);
  closers.push(() => a.stop());
  const c = new pmesh.Client({socket: a.socket});
  closers.push(() => c.close());
  const id = await c.create();
  const w = c.wait(id);
  await until(async () => (await c.status()).clients.waiters === 1, 5000, 'the wait to be open');
  const end = Date.now() + 7000;
  while (Date.now() < end) { /* a long synchronous computation */ }
  await c.resolve(id, 'still here');
  assert.equal((await w).toString(), 'still here');
});

test('a peer that is not ZeroMQ: ProtocolError at once, not a timeout', async () => {
  const sock = path.join(dir, 'http.sock');
  const srv = net.createServer((s) => {
    s.on('error', () => {}); // the client hangs up at once
    s.resume(); // reads, so that it sees the client go (srv.close waits for that)
    s.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
  });
  await new Promise((r) => srv.listen(sock, r));
  closers.push(() => new Promise((r) => srv.close(r)));
  const c = new pmesh.Client({socket: sock, connectTimeout: '10s'});
  const t0 = Date.now();
  await assert.rejects(c.status(), (e) => e instanceof pmesh.ProtocolError && /ZMTP/.test(e.message));
  assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
  await c.close();
});

test('the socket file of a SIGKILLed agent (nobody listens): Unreachable at once', {skip}, async () => {
  const a = await startAgent(dir, 'n-dead');
  await a.kill('SIGKILL');
  const sock = a.socket;
  const c = new pmesh.Client({socket: sock, connectTimeout: '10s'});
  const t0 = Date.now();
  await assert.rejects(c.status(), (e) => e instanceof pmesh.Unreachable && /ECONNREFUSED/.test(e.message));
  assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
  await c.close();
});

test("a libzmq peer's heartbeat PINGs are answered: its heartbeat timeout keeps the session", async () => {
  const sock = path.join(dir, 'pinger.sock');
  // PING every 50 ms, and drop a peer silent for 150 ms after one: only the
  // PONGs (our own pmesh pings go every 400 ms) keep the session.
  const r = new Router({linger: 0, heartbeatInterval: 50, heartbeatTimeout: 150});
  await r.bind('ipc://' + sock);
  closers.push(() => { if (!r.closed) r.close(); });
  const st = {hellos: 0, statuses: 0};
  (async () => {
    try {
      for await (const [rid, body] of r) {
        const env = Envelope.decode(body);
        if (env.hello) {
          st.hellos++;
          await r.send([rid, Envelope.encode({version: 1, reqId: env.reqId, reply: {
            node: 'fake', mintPrefix: 'fake-x~c1.1-', session: st.hellos, maxValue: 1024, clientTimeoutMs: 0}}).finish()]);
        } else if (env.status) {
          st.statuses++;
          await r.send([rid, Envelope.encode({version: 1, reqId: env.reqId, reply: {json: '{"ok":1}'}}).finish()]);
        }
      }
    } catch (e) { /* closed */ }
  })();
  const c = new pmesh.Client({socket: sock, idleTimeout: 0});
  assert.deepEqual(await c.status(), {ok: 1});
  const t0 = Date.now();
  await until(() => Date.now() - t0 > 1200, 5000, 'some heartbeats');
  assert.deepEqual(await c.status(), {ok: 1});
  assert.equal(st.hellos, 1, 'one session: the peer never dropped the connection');
  assert.equal(st.statuses, 2);
  await c.close();
});
