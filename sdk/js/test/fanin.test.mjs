// Combinators (all, any, race, allSettled) and then({onReject}) against
// real agents: one agent with a worker, and a mesh of three with inputs on
// every agent; results decoded into native arrays (Buffer for bytes that are
// not UTF-8).
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import pmesh from '../lib/index.js';
import {haveBuild, startAgent, meshUp, tmpdir, until} from './agents.mjs';

const skip = haveBuild ? false : 'no build/bin/pmeshd (make -j2 all first)';
let agent, c, w, run;
const dir = tmpdir('sdk-fanin');

before(async () => {
  if (skip) return;
  agent = await startAgent(dir, 'n-fanin', ['--max-fanin-inputs', '4']);
  c = new pmesh.Client({socket: agent.socket});
  w = new pmesh.Worker({socket: agent.socket, concurrency: 2});
  w.function('upper', (x) => x.toString().toUpperCase());
  w.function('recover', (reason) => 'recovered from ' + reason.toString());
  run = w.run();
  await new Promise((r) => w.once('registered', r));
});

after(async () => {
  if (skip) return;
  await c.close();
  await w.close();
  await run;
  await agent.stop();
});

test('decoders', () => {
  assert.deepEqual(pmesh.decodeValues(Buffer.from('["a",{"base64":"/wA="},""]')),
                   ['a', Buffer.from([0xff, 0]), '']);
  assert.deepEqual(pmesh.decodeOutcomes('[{"state":"resolved","value":"x"},{"state":"timedout","reason":{"base64":"gA=="}}]'),
                   [{state: 'resolved', value: 'x'}, {state: 'timedout', reason: Buffer.from([0x80])}]);
  assert.deepEqual(pmesh.decodeFailures('{"id":"a~1","state":"canceled","reason":"canceled"}'),
                   [{id: 'a~1', state: 'canceled', reason: 'canceled'}]);
  assert.deepEqual(pmesh.decodeFailures('plain words'), []);
  assert.throws(() => pmesh.decodeValues('{"a":1}'), pmesh.ProtocolError);
  assert.throws(() => pmesh.decodeValues('[{"base64":"not base64!"}]'), pmesh.ProtocolError);
});

test('all, any, race, allSettled: pipelined, decoded', {skip}, async () => {
  // Nothing awaited until the end: the inputs' creates, the combinators and
  // the settles all go out before the first reply is read.
  const a = c.create({timeout: '1m'});
  const b = c.create({timeout: '1m'});
  const all = c.all([a, b, a], {timeout: '1m'});
  const any = c.any([a, b]);
  const race = c.race([b, a]);
  const settled = c.allSettled([a, b]);
  c.resolve(a, Buffer.from([0xff, 0x00]));
  c.resolve(b, 'héllo');
  assert.deepEqual(await c.waitAll(all, {timeout: '10s'}), [Buffer.from([0xff, 0]), 'héllo', Buffer.from([0xff, 0])]);
  assert.deepEqual(await c.wait(race, {timeout: '10s'}), Buffer.from([0xff, 0]));
  assert.deepEqual(await c.wait(any, {timeout: '10s'}), Buffer.from([0xff, 0]));
  assert.deepEqual(await c.waitAllSettled(settled, {timeout: '10s'}),
                   [{state: 'resolved', value: Buffer.from([0xff, 0])}, {state: 'resolved', value: 'héllo'}]);
  assert.match(await all, /~/);
  assert.equal((await c.get(all)).state, 'resolved');
});

test('failures, timeouts, nesting, refusals', {skip}, async () => {
  const a = await c.create();
  const b = await c.create();
  const x = await c.create();
  const all = c.all([a, b]);
  const any = c.any([a, b]);
  const settled = c.allSettled([a, b]);
  await assert.rejects(c.resolve(all, 'forged'), pmesh.NotSettleable);
  await c.reject(a, 'first');
  await assert.rejects(c.waitAll(all, {timeout: '10s'}), (e) => {
    assert.ok(e instanceof pmesh.Rejected);
    assert.deepEqual(e.failures, [{id: a, state: 'rejected', reason: 'first'}]);
    return true;
  });
  await assert.rejects(c.wait(any, {timeout: 200}), pmesh.WaitTimeout);
  await c.cancel(b);
  await assert.rejects(c.wait(any, {timeout: '10s'}), (e) => {
    assert.deepEqual(e.failures.map((f) => f.state), ['rejected', 'canceled']);
    return true;
  });
  const outs = await c.waitAllSettled(settled, {timeout: '10s'});
  assert.deepEqual(outs.map((o) => o.state), ['rejected', 'canceled']);
  assert.equal(outs[0].reason, 'first');
  const timed = c.race([x], {timeout: '200ms'});
  await assert.rejects(c.wait(timed, {timeout: '10s'}), (e) => e.state === 'timedout' && e.failures.length === 0);
  assert.equal((await c.get(x)).state, 'pending');
  const nested = c.allSettled([all, timed, c.all([await c.create()])]);
  await assert.rejects(c.wait(nested, {timeout: 200}), pmesh.WaitTimeout);
  assert.equal((await c.get(nested)).state, 'pending');
  // Limits and bad arguments.
  await assert.rejects(c.all([x, x, x, x, x]), pmesh.LimitReached); // --max-fanin-inputs 4
  await c.all([x, x, x, x]);
  await assert.rejects(c.all(x), pmesh.BadRequest);
  await assert.rejects(c.any([]), pmesh.BadRequest);
  await assert.rejects(c.race([x], {timeout: 'soon'}));
  // A keyed create's id is only known from its reply: the combinator waits for it.
  const keyed = c.create({idempotencyKey: 'fanin-k'});
  const k = c.race([keyed]);
  await c.resolve(keyed, 'k');
  assert.deepEqual(await c.wait(k, {timeout: '10s'}), Buffer.from('k'));
});

test('then with onReject, and then on a combinator', {skip}, async () => {
  const p = c.create();
  const q = c.then(p, 'upper', {onReject: 'recover'});
  c.reject(p, 'boom');
  assert.equal((await c.wait(q, {timeout: '10s'})).toString(), 'recovered from boom');
  const p2 = c.create();
  const q2 = c.then(p2, 'upper', {onReject: 'recover'});
  c.resolve(p2, 'fine');
  assert.equal((await c.wait(q2, {timeout: '10s'})).toString(), 'FINE');
  const a = c.create();
  const b = c.create();
  const j = c.then(c.all([a, b]), 'upper');
  c.resolve(a, 'x');
  c.resolve(b, 'y');
  assert.deepEqual(pmesh.decodeValues(await c.wait(j, {timeout: '10s'})), ['X', 'Y']);
  await assert.rejects(c.then(p, 'upper', {onReject: 42}), pmesh.BadRequest);
});

test('a mesh of three: inputs on every agent', {skip}, async () => {
  const mesh = meshUp(3, ['--probe-interval', '100ms', '--probe-timeout', '40ms']);
  const cs = mesh.sockets.map((socket) => new pmesh.Client({socket}));
  try {
    for (const x of cs) {
      await until(async () => (await x.status()).mesh.members.alive === 3, 15000, 'three alive');
    }
    const ids = await Promise.all(cs.map((x) => x.create({timeout: '1m'})));
    assert.deepEqual(ids.map((i) => i.split('-')[0]), ['n1', 'n2', 'n3']);
    const all = cs[1].all([...ids, ids[0]]); // owned by n2
    const settled = cs[2].allSettled(ids);
    const got = cs[0].waitAll(all, {timeout: '20s'}); // awaited from n1
    await Promise.all(cs.map((x, k) => x.resolve(ids[k], `from n${k + 1}`)));
    assert.deepEqual(await got, ['from n1', 'from n2', 'from n3', 'from n1']);
    assert.deepEqual((await cs[0].waitAllSettled(settled, {timeout: '10s'})).map((o) => o.value),
                     ['from n1', 'from n2', 'from n3']);
    const pend = cs[1].any([await cs[2].create()]);
    await assert.rejects(cs[0].resolve(pend, 'forged'), pmesh.NotSettleable); // relayed to n2
  } finally {
    for (const x of cs) await x.close();
    mesh.down();
  }
});
