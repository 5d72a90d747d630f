// A mesh of three agents (scripts/mesh-up on 127.0.0.1-3, plain text):
// promises are reachable from every agent, chains run on a worker attached
// to another agent, and a dead owner's promises fail with OwnerLost.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import pmesh from '../lib/index.js';
import {haveBuild, meshUp, until} from './agents.mjs';

const skip = haveBuild ? false : 'no build/bin/pmeshd (make -j2 all first)';
let mesh, c1, c2, c3, w, run;

before(async () => {
  if (skip) return;
  mesh = meshUp(3, ['--probe-interval', '100ms', '--probe-timeout', '40ms']);
  [c1, c2, c3] = mesh.sockets.map((socket) => new pmesh.Client({socket}));
  w = new pmesh.Worker({socket: mesh.sockets[2], concurrency: 8});
  w.function('twice', (x) => x.toString() + x.toString());
  run = w.run();
  await until(() => w.sessions === 1, 10000, 'worker on n3');
  // Every agent hears (by gossip) that n3 serves twice.
  for (const c of [c1, c2]) {
    await until(async () => (await c.members()).some((m) => (m.functions || []).some((f) => f.name === 'twice')),
                10000, 'gossip of the function');
  }
});

after(async () => {
  if (skip) return;
  for (const c of [c1, c2, c3]) await c.close();
  await w.close({grace: 500});
  await run;
  mesh.down();
});

test('three members, each seen alive', {skip}, async () => {
  const m = await c1.members();
  assert.deepEqual(m.map((x) => x.node).sort(), ['n1', 'n2', 'n3']);
  for (const x of m) assert.equal(x.state, 'alive');
});

test('a promise created on n2 is settled from n1 and awaited from n3', {skip}, async () => {
  const id = await c2.create({timeout: '30s'});
  const waited = c3.wait(id, {timeout: '10s'});
  await c1.resolve(id, 'across');
  assert.equal((await waited).toString(), 'across');
  assert.equal((await c1.get(id)).state, 'resolved');
});

test('pipelined chain from n1 runs on the worker attached to n3', {skip}, async () => {
  const p = c1.create({timeout: '30s'});
  const q = c1.then(p, 'twice');
  const r = c1.then(q, 'twice');
  c1.resolve(p, 'ab');
  assert.equal((await c1.wait(r, {timeout: '10s'})).toString(), 'abababab');
  // a chain on a promise owned by another agent
  const x = await c2.create({timeout: '30s'});
  const y = c1.then(x, 'twice');
  await c2.resolve(x, 'z');
  assert.equal((await c3.wait(y, {timeout: '10s'})).toString(), 'zz');
});

test('OwnerLost: n2 dies, its promise cannot be reached from n1', {skip}, async () => {
  const id = await c2.create({timeout: '60s'});
  assert.equal((await c1.get(id)).state, 'pending');
  mesh.kill(2);
  await until(async () => (await c1.members()).find((m) => m.node === 'n2').state === 'dead', 15000, 'n2 dead');
  await assert.rejects(c1.get(id), (e) => e instanceof pmesh.OwnerLost && e.code === -13);
  await assert.rejects(c2.status(), pmesh.Unreachable);
});
