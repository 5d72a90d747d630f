// Workers: concurrency within one process, and surviving the agent's death.
import {test, after} from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import pmesh from '../lib/index.js';
import {haveBuild, startAgent, Agent, tmpdir, until} from './agents.mjs';

const skip = haveBuild ? false : 'no build/bin/pmeshd (make -j2 all first)';
const dir = tmpdir();
const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

test('concurrency N: N invocations overlap in one worker process', {skip}, async () => {
  const agent = await startAgent(dir, 'n-conc');
  cleanup.push(() => agent.stop());
  const N = 8;
  const w = new pmesh.Worker({socket: agent.socket, concurrency: N});
  let inflight = 0, most = 0;
  const gate = [];
  // Each call holds its slot until N are in flight at once (or 10 s pass):
  // the count, not the clock, proves the overlap.
  w.function('hold', async (x) => {
    inflight++;
    most = Math.max(most, inflight);
    if (inflight >= N) gate.splice(0).forEach((r) => r());
    else await new Promise((r) => { gate.push(r); setTimeout(r, 10000); });
    inflight--;
    return x;
  });
  const run = w.run();
  cleanup.push(async () => { await w.close(); await run; });
  await new Promise((r) => w.once('registered', r));
  const c = new pmesh.Client({socket: agent.socket});
  cleanup.push(() => c.close());
  const chains = [];
  for (let i = 0; i < 3 * N; i++) {
    const p = c.create();
    chains.push(c.wait(c.then(p, 'hold'), {timeout: '30s'}));
    c.resolve(p, `v${i}`);
  }
  const out = await Promise.all(chains);
  out.forEach((v, i) => assert.equal(v.toString(), `v${i}`));
  assert.equal(most, N, `at most ${N} at once, and N reached`);
});

test('a worker survives SIGKILL + restart of its agent (same data dir)', {skip}, async () => {
  const data = path.join(dir, 'data');
  const args = ['--data-dir', data, '--takeover-grace', '0ms'];
  let agent = await new Agent(dir, 'n-restart', args).start();
  cleanup.push(() => agent.stop());
  const w = new pmesh.Worker({socket: agent.socket, concurrency: 4, backoff: {initial: 50, max: 500}});
  let calls = 0;
  w.function('inc', (x) => {
    calls++;
    return String(Number(x.toString()) + 1);
  });
  const run = w.run();
  let exited = false;
  run.then(() => { exited = true; }, () => { exited = true; });
  cleanup.push(async () => { await w.close(); await run; });
  await until(() => w.sessions === 1, 10000, 'first registration');

  const c = new pmesh.Client({socket: agent.socket});
  cleanup.push(() => c.close());
  // A chain created before the kill: its head is resolved only after the
  // restart, so its three steps run on the new session.
  const head = await c.create({timeout: '60s'});
  let tail = head;
  for (let i = 0; i < 3; i++) tail = await c.then(tail, 'inc', {timeout: '60s'});
  const waitBefore = c.wait(tail, {timeout: '30s'}).then((v) => v, (e) => e);

  await agent.kill('SIGKILL');
  // In-flight calls fail with Unreachable (the disconnect), not a hang.
  const e = await waitBefore;
  assert.ok(e instanceof pmesh.Unreachable, `wait in flight: ${e}`);
  await assert.rejects(c.status(), pmesh.Unreachable); // nothing there now

  agent = await new Agent(dir, 'n-restart', args).start();
  await until(() => w.sessions === 2, 15000, 'the worker to register again');
  assert.equal(exited, false);

  // The client reconnects by itself; the chain from before the kill goes on.
  await c.resolve(head, '10');
  assert.equal((await c.wait(tail, {timeout: '30s'})).toString(), '13');
  // And one created after the restart.
  const p = c.create({timeout: '60s'});
  let t = p;
  for (let i = 0; i < 3; i++) t = c.then(t, 'inc', {timeout: '60s'});
  c.resolve(p, '100');
  assert.equal((await c.wait(t, {timeout: '30s'})).toString(), '103');
  assert.ok(calls >= 6);
});

test('a worker waits (with backoff) for an agent that is not there yet', {skip}, async () => {
  const a = new Agent(dir, 'n-late');
  const w = new pmesh.Worker({socket: a.socket, backoff: {initial: 20, max: 200}});
  w.function('id', (x) => x);
  let retries = 0;
  w.on('retry', () => retries++);
  const run = w.run();
  await until(() => retries >= 3, 5000, 'retries');
  await a.start();
  cleanup.push(() => a.stop());
  await until(() => w.sessions === 1, 10000, 'registration');
  const c = new pmesh.Client({socket: a.socket});
  const p = c.create();
  const q = c.then(p, 'id');
  c.resolve(p, 'ok');
  assert.equal((await c.wait(q, {timeout: '10s'})).toString(), 'ok');
  await c.close();
  await w.close();
  await run;
});
