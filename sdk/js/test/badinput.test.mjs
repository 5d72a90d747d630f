// Bad input: something at the socket that is not an agent, an agent that
// vanishes mid-call, oversize values. Each is a typed error, never a hang.
import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import {Router} from 'zeromq';
import pmesh from '../lib/index.js';
import {Envelope} from '../lib/proto.js';
import {haveBuild, startAgent, tmpdir, until} from './agents.mjs';

const skip = haveBuild ? false : 'no build/bin/pmeshd (make -j2 all first)';
const dir = tmpdir();
const closers = [];
after(async () => {
  for (const f of closers.reverse()) await f();
});

// A fake agent: a ROUTER at an ipc path answering each request with answer(env).
async function fakeAgent(name, answer) {
  const sock = path.join(dir, name);
  const r = new Router({linger: 0});
  await r.bind('ipc://' + sock);
  const state = {requests: 0};
  (async () => {
    try {
      for await (const [rid, body] of r) {
        state.requests++;
        const env = Envelope.decode(body);
        const out = answer(env, state);
        if (out === 'close') {
          r.close();
          return;
        }
        if (Array.isArray(out)) await r.send([rid, ...out]);
        else if (out) await r.send([rid, out]);
      }
    } catch (e) { /* closed */ }
  })();
  closers.push(() => { if (!r.closed) r.close(); });
  return {sock, state, router: r};
}

const hello = (env) => Envelope.encode({version: 1, reqId: env.reqId, reply: {
  node: 'fake', mintPrefix: 'fake-x~c1.1-', session: 1, maxValue: 1024, clientTimeoutMs: 2000}}).finish();

test('garbage in reply to hello: ProtocolError (an Unreachable)', async () => {
  const f = await fakeAgent('garbage.sock', () => Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]));
  const c = new pmesh.Client({socket: f.sock});
  await assert.rejects(c.create(), (e) => e instanceof pmesh.ProtocolError && e instanceof pmesh.Unreachable);
  await c.close();
});

test('garbage after a good hello fails every call in flight', async () => {
  const f = await fakeAgent('garbage2.sock', (env, st) => (env.hello ? hello(env) : st.requests >= 3 ? Buffer.from('not protobuf \xff\xff') : null));
  const c = new pmesh.Client({socket: f.sock});
  const a = c.create();
  const b = c.wait('fake-x~c1.1-9');
  await assert.rejects(a, pmesh.ProtocolError);
  await assert.rejects(b, pmesh.ProtocolError);
  await c.close();
});

test('a reply of another wire version, or in two frames: ProtocolError', async () => {
  const f = await fakeAgent('version.sock', (env) => Envelope.encode({version: 9, reqId: env.reqId, reply: {}}).finish());
  const c = new pmesh.Client({socket: f.sock});
  await assert.rejects(c.status(), /wire version 9/);
  await c.close();
  const g = await fakeAgent('frames.sock', (env) => [hello(env), Buffer.from('second frame')]);
  const c2 = new pmesh.Client({socket: g.sock});
  await assert.rejects(c2.status(), (e) => e instanceof pmesh.ProtocolError && /2 frames/.test(e.message));
  await c2.close();
});

const idReply = (reqId, id) => Envelope.encode({version: 1, reqId, reply: {id}}).finish();
const batchOf = (...frames) => Envelope.encode({version: 1, batch: {frames}}).finish();

test('a Batch from the agent is its envelopes, each as if it came alone', async () => {
  const f = await fakeAgent('batch.sock', (env) => (env.hello ? hello(env) : env.create
    ? batchOf(idReply(env.reqId + 1000, 'late'), idReply(env.reqId, 'fake-x~c1.1-9'))
    : null));
  const c = new pmesh.Client({socket: f.sock});
  assert.equal(await c.create(), 'fake-x~c1.1-9');
  await c.close();
});

test('a bad Batch (a batch inside, garbage inside, a request inside): ProtocolError', async () => {
  const inner = [
    (env) => batchOf(idReply(env.reqId, 'x')),
    () => Buffer.from('not protobuf \xff\xff'),
    () => Envelope.encode({version: 1, hello: {clientName: 'x'}}).finish(),
  ];
  for (const [i, bad] of inner.entries()) {
    const f = await fakeAgent(`badbatch${i}.sock`, (env) => (env.hello ? hello(env) : env.create ? batchOf(bad(env)) : null));
    const c = new pmesh.Client({socket: f.sock});
    await assert.rejects(c.create(), pmesh.ProtocolError);
    await c.close();
  }
});

test('the hello asks for batches', async () => {
  let asked;
  const f = await fakeAgent('hello.sock', (env) => {
    if (env.hello) asked = env.hello.batches;
    return env.hello ? hello(env) : env.create ? idReply(env.reqId, 'fake-x~c1.1-1') : null;
  });
  const c = new pmesh.Client({socket: f.sock});
  await c.create();
  assert.equal(asked, true);
  await c.close();
});

test('an agent that never answers: Unreachable within the connect timeout', async () => {
  const f = await fakeAgent('silent.sock', () => null);
  const c = new pmesh.Client({socket: f.sock, connectTimeout: 300});
  const t0 = Date.now();
  await assert.rejects(c.status(), pmesh.Unreachable);
  assert.ok(Date.now() - t0 < 3000);
  await c.close();
});

test('an agent that answers hello, then nothing: Unreachable within the call timeout', async () => {
  const f = await fakeAgent('mute.sock', (env) => (env.hello ? hello(env) : null));
  const c = new pmesh.Client({socket: f.sock, callTimeout: 400});
  const t0 = Date.now();
  await assert.rejects(c.get('fake-x~c1.1-1'), (e) => e instanceof pmesh.Unreachable && /in time/.test(e.message));
  assert.ok(Date.now() - t0 < 3000);
  await c.close();
});

test('an agent that vanishes mid-call: Unreachable for each call in flight, fast', async () => {
  const f = await fakeAgent('vanish.sock', (env, st) => (env.hello ? hello(env) : st.requests >= 4 ? 'close' : null));
  const c = new pmesh.Client({socket: f.sock}); // 30 s call timeout: the disconnect must do it
  const t0 = Date.now();
  const calls = [c.wait('fake-x~c1.1-1'), c.get('fake-x~c1.1-2'), c.create()];
  for (const p of calls) await assert.rejects(p, pmesh.Unreachable);
  assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
  await c.close();
});

test('a real agent SIGKILLed mid-wait; the next call reconnects by itself', {skip}, async () => {
  const a = await startAgent(dir, 'n-killed');
  const c = new pmesh.Client({socket: a.socket});
  closers.push(() => c.close());
  const id = await c.create();
  const waits = [c.wait(id), c.wait(id, {timeout: '60s'})].map((p) => p.then(() => null, (e) => e));
  await until(async () => (await c.status()).clients.waiters === 2, 5000, 'the waits to be open');
  const t0 = Date.now();
  await a.kill('SIGKILL');
  for (const e of await Promise.all(waits)) assert.ok(e instanceof pmesh.Unreachable, String(e));
  assert.ok(Date.now() - t0 < 5000);
  const b = await startAgent(dir, 'n-killed');
  closers.push(() => b.stop());
  const id2 = await c.create();
  await c.resolve(id2, 'again');
  assert.equal((await c.wait(id2)).toString(), 'again');
});

test('oversize values: ValueTooLarge before anything is sent; a worker result over the limit rejects its target', {skip}, async () => {
  const a = await startAgent(dir, 'n-max', ['--max-value-bytes', '100']);
  closers.push(() => a.stop());
  const c = new pmesh.Client({socket: a.socket});
  closers.push(() => c.close());
  const w = new pmesh.Worker({socket: a.socket});
  w.function('grow', (x) => Buffer.alloc(1000, x[0]));
  const run = w.run();
  closers.push(async () => { await w.close(); await run; });
  await until(() => w.sessions === 1, 5000, 'worker');
  const id = await c.create();
  await assert.rejects(c.resolve(id, Buffer.alloc(101)), pmesh.ValueTooLarge);
  await assert.rejects(c.reject(id, 'r'.repeat(101)), pmesh.ValueTooLarge);
  const q = c.then(id, 'grow');
  await c.resolve(id, 'x');
  await assert.rejects(c.wait(q, {timeout: '10s'}), (e) => e instanceof pmesh.Rejected && /larger than the agent accepts/.test(e.reason));
  await assert.rejects(c.resolve(id, {an: 'object'}), pmesh.BadRequest);
});
