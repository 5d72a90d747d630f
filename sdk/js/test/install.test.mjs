// `npm install PATH/TO/sdk/js` from another project gives it a working
// @pmesh/client, through both require() and import, with its types and the
// schema copy (the prepare step's) in the package.
import {test, before, after} from 'node:test';
import assert from 'node:assert/strict';
import {execFileSync} from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {haveBuild, startAgent, tmpdir} from './agents.mjs';

const pkg = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const skip = haveBuild ? false : 'no build/bin/pmeshd (make -j2 all first)';
const dir = tmpdir('install');
let agent;

before(async () => {
  if (skip) return;
  agent = await startAgent(dir, 'n-install');
});
after(async () => {
  if (agent) await agent.stop();
});

const npm = (args, cwd) => execFileSync('npm', args, {cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']});

test('the packed package carries its schema copy, types and both entries', () => {
  const [info] = JSON.parse(npm(['pack', '--dry-run', '--json', '--ignore-scripts'], pkg));
  const files = info.files.map((f) => f.path);
  for (const f of ['proto/pmesh.proto', 'index.d.ts', 'index.mjs', 'lib/index.js', 'lib/connection.js', 'package.json']) {
    assert.ok(files.includes(f), `${f} in ${files.join(' ')}`);
  }
  assert.ok(!files.some((f) => f.startsWith('test/') || f.startsWith('node_modules/')));
  // The copy is the schema, byte for byte.
  assert.deepEqual(fs.readFileSync(path.join(pkg, 'proto', 'pmesh.proto')),
                   fs.readFileSync(path.join(pkg, '..', '..', 'proto', 'pmesh.proto')));
});

test('npm install PATH from another project: require() and import both work', {skip}, () => {
  const proj = path.join(dir, 'app');
  fs.mkdirSync(proj);
  fs.writeFileSync(path.join(proj, 'package.json'), JSON.stringify({name: 'app', version: '1.0.0', private: true}));
  npm(['install', '--no-audit', '--no-fund', '--loglevel=error', pkg], proj);
  const dep = JSON.parse(fs.readFileSync(path.join(proj, 'package.json'))).dependencies['@pmesh/client'];
  assert.ok(dep, 'dependency recorded');
  const env = {...process.env, PMESH_SOCKET: agent.socket};
  fs.writeFileSync(path.join(proj, 'cjs.js'), `
const {Client, NotFound} = require('@pmesh/client');
(async () => {
  const c = new Client();
  const id = c.create({timeout: '10s'});
  c.resolve(id, 'from cjs');
  const v = await c.wait(id);
  let nf = false;
  try { await c.get('n-install-x~c1.1-1'); } catch (e) { nf = e instanceof NotFound; }
  console.log(v.toString() + ' ' + nf);
  await c.close();
})();
`);
  fs.writeFileSync(path.join(proj, 'esm.mjs'), `
import pmesh, {Client, Worker} from '@pmesh/client';
const w = new Worker({concurrency: 2});
w.function('shout', (x) => x.toString().toUpperCase() + '!');
const run = w.run();
await new Promise((r) => w.once('registered', r));
const c = new Client();
const p = c.create();
const q = c.then(p, 'shout');
c.resolve(p, 'from esm');
console.log((await c.wait(q)).toString(), typeof pmesh.Client);
await c.close();
await w.close();
await run;
`);
  const run = (f) => execFileSync(process.execPath, [f], {cwd: proj, env, encoding: 'utf8', timeout: 20000}).trim();
  assert.equal(run('cjs.js'), 'from cjs true');
  assert.equal(run('esm.mjs'), 'FROM ESM! function');
});
