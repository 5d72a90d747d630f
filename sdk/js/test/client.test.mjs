// Every client operation and every error code a single agent produces,
// against a real pmeshd.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {spawnSync} from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {Dealer} from 'zeromq';
import pmesh from '../lib/index.js';
import {Connection} from '../lib/connection.js';
import {Envelope} from '../lib/proto.js';
import {haveBuild, startAgent, tmpdir, sleep, until} from './agents.mjs';

const skip = haveBuild ? false : 'no build/bin/pmeshd (make -j2 all first)';
let agent, small, c, w, run;
const dir = tmpdir();

before(async () => {
  if (skip) return;
  agent = await startAgent(dir, 'n-client', ['--max-waiters-per-client', '3', '--max-labels', '2',
                                              '--token-secret-file', writeSecret()]);
  small = await startAgent(dir, 'n-small', ['--max-value-bytes', '64']);
  c = new pmesh.Client({socket: agent.socket});
  w = new pmesh.Worker({socket: agent.socket, concurrency: 4});
  w.function('upper', (x) => x.toString().toUpperCase());
  w.function('fail', () => {
    throw new Error('it broke');
  });
  run = w.run();
  await new Promise((r) => w.once('registered', r));
});

after(async () => {
  if (skip) return;
  await c.close();
  await w.close();
  await run;
  await agent.stop();
  await small.stop();
});

function writeSecret() {
  const f = `${dir}/token`;
  fs.writeFileSync(f, 'k'.repeat(64), {mode: 0o600});
  return f;
}

test('create, resolve, get, wait', {skip}, async () => {
  const id = await c.create({timeout: '30s', labels: {team: 'a'}});
  assert.match(id, /~/);
  assert.equal((await c.get(id)).state, 'pending');
  await c.resolve(id, Buffer.from([0, 1, 2, 255]));
  assert.deepEqual(await c.wait(id), Buffer.from([0, 1, 2, 255]));
  const p = await c.get(id);
  assert.equal(p.state, 'resolved');
  assert.deepEqual(p.labels, {team: 'a'});
  assert.ok(p.timeoutAtMs > p.createdMs && p.settledMs >= p.createdMs);
  assert.equal(c.node, 'n-client');
});

test('strings are UTF-8; resolving twice with the same value is idempotent', {skip}, async () => {
  const id = await c.create();
  await c.resolve(id, 'héllo');
  await c.resolve(id, 'héllo');
  assert.equal((await c.wait(id)).toString('utf8'), 'héllo');
});

test('reject, cancel and timeout reject wait() with Rejected', {skip}, async () => {
  const a = await c.create();
  await c.reject(a, 'no way');
  await assert.rejects(c.wait(a), (e) => e instanceof pmesh.Rejected && e.state === 'rejected' && e.reason === 'no way');
  const b = await c.create();
  await c.cancel(b);
  await assert.rejects(c.wait(b), (e) => e instanceof pmesh.Rejected && e.state === 'canceled');
  const t = await c.create({timeout: '100ms'});
  await assert.rejects(c.wait(t, {timeout: '5s'}), (e) => e instanceof pmesh.Rejected && e.state === 'timedout');
  // TIMED_OUT: a timed-out promise cannot be settled.
  await assert.rejects(c.resolve(t, 'late'), (e) => e instanceof pmesh.TimedOut && e.code === -4);
});

test('heartbeat keeps a promise alive; a missed heartbeat times it out', {skip}, async () => {
  const id = await c.create({heartbeat: '1s'});
  const first = (await c.get(id)).heartbeatAtMs;
  for (let i = 0; i < 4; i++) {
    await sleep(100);
    await c.heartbeat(id);
  }
  const p = await c.get(id);
  assert.equal(p.state, 'pending');
  assert.equal(p.heartbeatMs, 1000);
  assert.ok(p.heartbeatAtMs > first, 'each heartbeat moves the deadline');
  await assert.rejects(c.wait(id, {timeout: '5s'}), (e) => e instanceof pmesh.Rejected && e.state === 'timedout');
});

test('idempotency key and settle token', {skip}, async () => {
  const a = await c.create({idempotencyKey: 'order-17', token: true});
  assert.equal(a.created, true);
  assert.equal(typeof a.token, 'string');
  assert.ok(a.token.length > 10);
  const b = await c.create({idempotencyKey: 'order-17', token: true});
  assert.equal(b.id, a.id);
  assert.equal(b.created, false);
  // A keyed create's promise works as an id too (the call waits for it).
  const k = c.create({idempotencyKey: 'order-18'});
  await c.resolve(k, 'v');
  assert.equal((await c.wait(k)).toString(), 'v');
  assert.equal(pmesh.callbackUrl('http://127.0.0.1:1/', a.id), `http://127.0.0.1:1/v1/promises/${a.id}/resolve`);
});

test('then chains a worker function; pipelined create/then/resolve/wait', {skip}, async () => {
  const p = c.create({timeout: '30s'});
  const q = c.then(p, 'upper');
  const r = c.then(q, 'upper');
  const done = c.wait(r, {timeout: '10s'});
  c.resolve(p, 'abc');
  assert.equal((await done).toString(), 'ABC');
  const [pid, qid] = await Promise.all([p, q]);
  assert.notEqual(pid, qid);
  // a function that throws rejects the target with its message
  const x = c.create();
  const y = c.then(x, 'fail');
  c.resolve(x, 'in');
  await assert.rejects(c.wait(y, {timeout: '10s'}), (e) => e instanceof pmesh.Rejected && e.reason === 'it broke');
});

test('pipelining: many requests in flight on one connection', {skip}, async () => {
  const n = 2000;
  // The replies to a pipelined burst come batched (Hello.batches): count the
  // frames read against the envelopes in them.
  const seen = {frames: 0, envelopes: 0};
  const {_onFrame: onFrame, _onEnvelope: onEnvelope} = Connection.prototype;
  Connection.prototype._onFrame = function (...a) { seen.frames++; return onFrame.apply(this, a); };
  Connection.prototype._onEnvelope = function (...a) { seen.envelopes++; return onEnvelope.apply(this, a); };
  try {
    const ids = Array.from({length: n}, () => c.create({timeout: '30s'}));
    const settles = ids.map((id, i) => c.resolve(id, String(i)));
    const values = await Promise.all(ids.map((id) => c.wait(id, {timeout: '10s'})));
    await Promise.all(settles);
    values.forEach((v, i) => assert.equal(v.toString(), String(i)));
    assert.equal(new Set(await Promise.all(ids)).size, n);
  } finally {
    Connection.prototype._onFrame = onFrame;
    Connection.prototype._onEnvelope = onEnvelope;
  }
  assert.ok(seen.envelopes >= 3 * n, JSON.stringify(seen));
  assert.ok(seen.frames < seen.envelopes / 2, JSON.stringify(seen));
});

test('list: state, prefix, label, limit and cursor', {skip}, async () => {
  const ids = [];
  for (let i = 0; i < 5; i++) ids.push(await c.create({labels: {batch: 'L1'}}));
  const page = await c.list({label: {batch: 'L1'}, limit: 3});
  assert.equal(page.promises.length, 3);
  assert.ok(page.cursor);
  const rest = await c.list({label: ['batch', 'L1'], limit: 3, cursor: page.cursor});
  assert.equal(rest.promises.length, 2);
  assert.deepEqual([...page.promises, ...rest.promises].map((p) => p.id).sort(), [...ids].sort());
  await c.resolve(ids[0], 'x');
  const pend = await c.list({label: {batch: 'L1'}, state: 'pending'});
  assert.equal(pend.promises.length, 4);
  const pre = await c.list({prefix: ids[0]});
  assert.deepEqual(pre.promises.map((p) => p.id), [ids[0]]);
});

test('status and members', {skip}, async () => {
  const s = await c.status();
  assert.equal(s.node, 'n-client');
  const m = await c.members();
  assert.equal(m[0].node, 'n-client');
});

test('errors: NotFound, AlreadySettled, WaitTimeout, BadRequest, LimitReached', {skip}, async () => {
  await assert.rejects(c.get('n-client-zz~c9.9-1'), (e) => e instanceof pmesh.NotFound && e.code === -2 && e.errorName === 'NOT_FOUND');
  const id = await c.create();
  await c.resolve(id, 'a');
  await assert.rejects(c.reject(id, 'b'), (e) => e instanceof pmesh.AlreadySettled && e.code === -3);
  const p = await c.create();
  await assert.rejects(c.wait(p, {timeout: 50}), (e) => e instanceof pmesh.WaitTimeout && e.code === -8);
  await assert.rejects(c.then(p, 'x'.repeat(300)), (e) => e instanceof pmesh.BadRequest && e.code === -6);
  // --max-labels 2
  await assert.rejects(c.create({labels: {a: '1', b: '2', c: '3'}}), (e) => e instanceof pmesh.LimitReached);
  // --max-waiters-per-client 3: the fourth open wait is refused
  const waits = [1, 2, 3].map(() => c.wait(p, {timeout: '2s'}).catch((e) => e));
  await assert.rejects(c.wait(p, {timeout: '2s'}), (e) => e instanceof pmesh.LimitReached && e.code === -12);
  await c.resolve(p, 'done');
  for (const r of await Promise.all(waits)) assert.equal(r.toString(), 'done');
  await assert.rejects(c.create({timeout: 'soon'}), pmesh.BadRequest);
});

test('ValueTooLarge: refused before sending (hello max_value), and by the agent', {skip}, async () => {
  const s = new pmesh.Client({socket: small.socket});
  try {
    const id = await s.create();
    assert.equal(s.maxValue, 64);
    await assert.rejects(s.resolve(id, Buffer.alloc(65)), (e) => e instanceof pmesh.ValueTooLarge && e.code === -5);
    await s.resolve(id, Buffer.alloc(64, 7));
    assert.equal((await s.wait(id)).length, 64);
    // The agent's own check, with the client's bypassed.
    const conn = await new Connection(small.socket).open();
    const pid = conn.mint();
    await conn.request('create', {id: pid}, 5000);
    await assert.rejects(conn.request('settle', {id: pid, kind: 2, value: Buffer.alloc(100)}, 5000), pmesh.ValueTooLarge);
    conn.close();
  } finally {
    await s.close();
  }
});

test('NotHolder: answering an invocation this session does not hold', {skip}, async () => {
  const conn = await new Connection(agent.socket).open();
  try {
    await assert.rejects(conn.request('result', {invocationId: 'nope', ok: true}, 5000),
                         (e) => e instanceof pmesh.NotHolder && e.code === -11);
  } finally {
    conn.close();
  }
});

test('BadVersion: an envelope of another version is refused', {skip}, async () => {
  const d = new Dealer({linger: 0});
  d.connect('ipc://' + agent.socket);
  try {
    await d.send(Envelope.encode({version: 7, reqId: 5, status: {}}).finish());
    const [m] = await d.receive();
    const env = Envelope.decode(m);
    const e = pmesh.errorFor(env.reply.err, env.reply.message);
    assert.ok(e instanceof pmesh.BadVersion);
    assert.equal(e.code, -10);
  } finally {
    d.close();
  }
});

test('AgentShuttingDown: a wait open when the agent stops hears it', {skip}, async () => {
  const a = await startAgent(dir, 'n-stopping');
  const s = new pmesh.Client({socket: a.socket});
  try {
    const id = await s.create();
    const w8 = s.wait(id).then(() => null, (e) => e);
    await until(async () => (await s.status()).clients.waiters === 1, 5000, 'the wait to be open');
    await a.stop();
    const e = await w8;
    assert.ok(e instanceof pmesh.AgentShuttingDown, String(e));
    assert.equal(e.code, -7);
  } finally {
    await s.close();
    await a.stop();
  }
});

test('Unreachable: no agent at the path, at once', {skip}, async () => {
  const s = new pmesh.Client({socket: `${dir}/nothing.sock`});
  const t0 = Date.now();
  await assert.rejects(s.create(), (e) => e instanceof pmesh.Unreachable && e.code === -9);
  assert.ok(Date.now() - t0 < 1000);
  await s.close();
});

test('every pm_err code has its class', () => {
  const names = {'-1': 'Internal', '-2': 'NotFound', '-3': 'AlreadySettled', '-4': 'TimedOut', '-5': 'ValueTooLarge',
    '-6': 'BadRequest', '-7': 'AgentShuttingDown', '-8': 'WaitTimeout', '-9': 'Unreachable', '-10': 'BadVersion',
    '-11': 'NotHolder', '-12': 'LimitReached', '-13': 'OwnerLost', '-14': 'NoSession'};
  for (const [code, cls] of Object.entries(names)) {
    const e = pmesh.errorFor(+code, 'm');
    assert.ok(e instanceof pmesh[cls], cls);
    assert.ok(e instanceof pmesh.PmeshError);
    assert.equal(e.code, +code);
    assert.equal(e.name, cls);
  }
  assert.ok(pmesh.errorFor(-99) instanceof pmesh.Internal);
});

test('a Client is not a thenable', {skip}, async () => {
  const s = new pmesh.Client({socket: agent.socket});
  await assert.rejects(async () => await s, TypeError);
  await s.connect();
  await s.close();
});

test('a client left open does not keep the process alive (idle connections close)', {skip}, () => {
  const lib = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'lib', 'index.js');
  const script = `const {Client} = require(${JSON.stringify(lib)});
    (async () => {
      const c = new Client({socket: ${JSON.stringify(agent.socket)}, idleTimeout: 200});
      const id = c.create(); c.resolve(id, 'x');
      console.log((await c.wait(id)).toString());
    })();`;
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['-e', script], {timeout: 15000, encoding: 'utf8'});
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'x');
  assert.ok(Date.now() - t0 < 10000);
});
