// deploy/examples/knative-node/function.mjs against a real agent with its
// HTTP gateway: the test plays the outside system (POSTs to the callback
// URL with the settle token) and the HTTP client of the function.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {spawnSync} from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import pmesh from '../lib/index.js';
import {haveBuild, startAgent, tmpdir, until, REPO} from './agents.mjs';

const skip = haveBuild ? false : 'no build/bin/pmeshd (make -j2 all first)';
const dir = tmpdir('example');
let agent, ex, worker, run, client, server, base, gateway, app;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const {port} = s.address();
      s.close(() => resolve(port));
    });
  });
}

before(async () => {
  if (skip) return;
  fs.writeFileSync(path.join(dir, 'token'), 't'.repeat(64), {mode: 0o600});
  const port = await freePort();
  let pub = await freePort();
  while (pub === port) pub = await freePort();
  // Outside systems call back through the public listener (settle tokens only).
  gateway = `http://127.0.0.1:${pub}`;
  agent = await startAgent(dir, 'n-example', ['--http', `127.0.0.1:${port}`, '--http-public', `127.0.0.1:${pub}`,
                                              '--token-secret-file', path.join(dir, 'token')]);
  // The example as a project that installed @pmesh/client from a folder
  // (npm links it: node_modules/@pmesh/client -> sdk/js).
  app = path.join(dir, 'app');
  fs.mkdirSync(path.join(app, 'node_modules', '@pmesh'), {recursive: true});
  fs.symlinkSync(path.resolve(REPO, 'sdk', 'js'), path.join(app, 'node_modules', '@pmesh', 'client'));
  fs.copyFileSync(path.join(REPO, 'deploy', 'examples', 'knative-node', 'function.mjs'), path.join(app, 'function.mjs'));
  fs.copyFileSync(path.join(REPO, 'deploy', 'examples', 'knative-node', 'package.json'), path.join(app, 'package.json'));
  ex = await import(path.join(app, 'function.mjs'));
  worker = ex.makeWorker({socket: agent.socket});
  run = worker.run();
  await until(() => worker.sessions === 1, 10000, 'example worker');
  client = new pmesh.Client({socket: agent.socket});
  server = ex.makeServer(new pmesh.Client({socket: agent.socket}), {publicUrl: gateway});
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}`;
});

after(async () => {
  if (skip) return;
  await new Promise((r) => server.close(r));
  await client.close();
  await worker.close();
  await run;
  await agent.stop();
});

test('an order: outside system answers by callback, two chained steps run on the worker', {skip}, async () => {
  const r = await fetch(`${base}/orders`, {method: 'POST', body: JSON.stringify({item: 'lamp'})});
  assert.equal(r.status, 202);
  const o = await r.json();
  assert.ok(o.callback_url.startsWith(`${gateway}/v1/promises/`));
  assert.ok(o.settle_token);
  // still waiting for the outside system
  assert.equal((await fetch(`${base}/orders/${encodeURIComponent(o.receipt_id)}`)).status, 504);
  // the outside system calls back
  const cb = await fetch(o.callback_url, {method: 'POST', headers: {authorization: `Bearer ${o.settle_token}`},
                                          body: JSON.stringify({value: JSON.stringify({accepted: true, item: 'lamp'})})});
  assert.equal(cb.status, 200, await cb.text());
  const done = await fetch(`${base}/orders/${encodeURIComponent(o.receipt_id)}`);
  assert.equal(done.status, 200);
  assert.deepEqual(await done.json(), {receipt: 'receipt: lamp for 4.00'});
});

test('a declined order: the step throws, the chain ends rejected with its message', {skip}, async () => {
  const o = await ex.startOrder(client, 'sofa', {publicUrl: gateway});
  const cb = await fetch(o.callback_url, {method: 'POST', headers: {authorization: `Bearer ${o.settle_token}`},
                                          body: JSON.stringify({value: JSON.stringify({accepted: false, note: 'sold out'})})});
  assert.equal(cb.status, 200);
  await assert.rejects(client.wait(o.receipt_id, {timeout: '10s'}),
                       (e) => e instanceof pmesh.Rejected && /declined: sold out$/.test(e.reason));
  const r = await fetch(`${base}/orders/${encodeURIComponent(o.receipt_id)}`);
  assert.equal(r.status, 409);
  // a callback without the token is refused
  const bad = await fetch(o.callback_url, {method: 'POST', body: '{"value":"x"}'});
  assert.equal(bad.status, 401);
});

test('the worker pod probe: 0 while the agent answers, 1 when there is none', {skip}, () => {
  const probe = (socket) => spawnSync(process.execPath, [path.join(app, 'function.mjs'), 'probe'],
                                      {env: {...process.env, PMESH_SOCKET: socket}, timeout: 20000});
  assert.equal(probe(agent.socket).status, 0);
  const r = probe(path.join(dir, 'none.sock'));
  assert.equal(r.status, 1);
  assert.match(r.stderr.toString(), /agent: no agent socket/);
});
