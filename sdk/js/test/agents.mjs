// Test helpers: real pmeshd agents on loopback, started by the tests and
// stopped by PID (also when a test fails: after() hooks, and an exit hook for
// whatever is left). PIDs also go to $PMESH_CHILD_PIDS (the shell runner's
// list) so that its trap stops them if this process dies.
import {spawn, execFileSync} from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import pmesh from '../lib/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '..', '..', '..');
const BUILD = path.resolve(REPO, process.env.BUILD || 'build');
export const PMESHD = path.join(BUILD, 'bin', 'pmeshd');
export const PMESH = path.join(BUILD, 'bin', 'pmesh');
export const haveBuild = fs.existsSync(PMESHD) && fs.existsSync(PMESH);

const live = new Set();
process.on('exit', () => {
  for (const p of live) {
    try {
      process.kill(p, 'SIGKILL');
    } catch (e) { /* gone */ }
  }
});

function remember(pid) {
  live.add(pid);
  if (process.env.PMESH_CHILD_PIDS) fs.appendFileSync(process.env.PMESH_CHILD_PIDS, `${pid}\n`);
}

export function tmpdir(tag = 'sdk-node') {
  return fs.mkdtempSync(path.join(process.env.TMPDIR || os.tmpdir(), `pmesh-${tag}.`));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn until it returns something truthy (or resolves to it); throws
// after ms.
export async function until(fn, ms = 10000, what = 'condition') {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? ': ' + last.message : ''}`);
    await sleep(25);
  }
}

export class Agent {
  constructor(dir, name, args = []) {
    this.dir = dir;
    this.name = name;
    this.socket = path.join(dir, `${name}.sock`);
    this.log = path.join(dir, `${name}.log`);
    this.args = args;
    this.proc = null;
  }

  async start() {
    const out = fs.openSync(this.log, 'a');
    this.proc = spawn(PMESHD, ['--socket', this.socket, '--node', this.name, ...this.args],
                      {stdio: ['ignore', out, out]});
    fs.closeSync(out);
    this.pid = this.proc.pid;
    remember(this.pid);
    this.exited = new Promise((r) => this.proc.once('exit', (code, sig) => {
      live.delete(this.pid);
      r({code, sig});
    }));
    await until(async () => {
      if (this.proc.exitCode !== null) throw new Error(`pmeshd ${this.name} exited: ${this.tail()}`);
      const c = new pmesh.Client({socket: this.socket, connectTimeout: 500});
      try {
        return (await c.status()).node === this.name;
      } finally {
        await c.close();
      }
    }, 10000, `agent ${this.name} on ${this.socket}`);
    return this;
  }

  tail() {
    try {
      return fs.readFileSync(this.log, 'utf8').split('\n').slice(-15).join('\n');
    } catch (e) {
      return '';
    }
  }

  async kill(sig = 'SIGKILL') {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    process.kill(this.pid, sig);
    await this.exited;
  }

  // SIGTERM, then SIGKILL after 3 s.
  async stop() {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    process.kill(this.pid, 'SIGTERM');
    const t = setTimeout(() => {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch (e) { /* gone */ }
    }, 3000);
    await this.exited;
    clearTimeout(t);
  }
}

export async function startAgent(dir, name, args = []) {
  return new Agent(dir, name, args).start();
}

// A mesh of n agents through scripts/mesh-up (plain text mesh on 127.0.0.k,
// --insecure as the mesh suites run it); stop it with mesh.down().
export function meshUp(n, args = []) {
  const dir = path.join(tmpdir('mesh'), 'mesh');
  let port;
  let err;
  for (let attempt = 0; attempt < 3; attempt++) {
    port = 20000 + Math.floor(Math.random() * 40000);
    try {
      execFileSync(path.join(REPO, 'scripts', 'mesh-up'), [String(n), '--dir', dir, '--port', String(port), '--',
        '--replicas', '1', '--insecure', ...args],
      {cwd: REPO, env: {...process.env, BUILD}, stdio: ['ignore', 'ignore', 'pipe']});
      err = null;
      break;
    } catch (e) {
      err = e;
      fs.rmSync(path.join(dir, 'pids'), {force: true});
    }
  }
  if (err) throw new Error(`mesh-up failed: ${err.stderr}`);
  const pids = {};
  for (const line of fs.readFileSync(path.join(dir, 'pids'), 'utf8').trim().split('\n')) {
    const [node, pid] = line.split(/\s+/);
    pids[node] = +pid;
    remember(+pid);
  }
  const sockets = Array.from({length: n}, (_, k) => path.join(dir, `n${k + 1}.sock`));
  return {
    dir, sockets, pids,
    kill(k) {
      process.kill(pids[`n${k}`], 'SIGKILL');
    },
    down() {
      // mesh-down stops exactly these PIDs (checking each is still its
      // pmeshd); if it fails, the exit hook kills what is left.
      execFileSync(path.join(REPO, 'scripts', 'mesh-down'), [dir], {stdio: 'ignore'});
      for (const pid of Object.values(pids)) live.delete(pid);
    },
  };
}
