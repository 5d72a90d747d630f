#!/usr/bin/env node
// Benchmark hook of the Node SDK (scripts/bench-sdk runs it):
//   node sdk/js/bench/bench.mjs --socket PATH --mode latency    [--count N]
//       pipelined create -> resolve -> wait, one lifecycle at a time:
//       prints "p50_us=.. p99_us=.."
//   node sdk/js/bench/bench.mjs --socket PATH --mode throughput [--window W] [--seconds S]
//       W lifecycles in flight from one process: prints "per_s=.."
//   node sdk/js/bench/bench.mjs --socket PATH --mode worker --function F [--concurrency N]
//       serves F (value -> the same value) until SIGTERM
import {parseArgs} from 'node:util';
import pmesh from '../lib/index.js';

const {values: a} = parseArgs({options: {
  socket: {type: 'string'}, mode: {type: 'string', default: 'latency'},
  count: {type: 'string', default: '20000'}, window: {type: 'string', default: '256'},
  seconds: {type: 'string', default: '3'}, function: {type: 'string', default: 'echo'},
  concurrency: {type: 'string', default: '32'}, warmup: {type: 'string', default: '1000'},
}});
const value = Buffer.from('pmesh-bench value of 31 bytes..');

function lifecycle(c) {
  const id = c.create({timeout: '60s'});
  const r = c.resolve(id, value);
  return Promise.all([id, r, c.wait(id, {timeout: '30s'})]);
}

async function latency() {
  const c = new pmesh.Client({socket: a.socket});
  await c.connect();
  const n = +a.count, warm = +a.warmup;
  const us = new Float64Array(n);
  for (let i = 0; i < warm + n; i++) {
    const t0 = process.hrtime.bigint();
    await lifecycle(c);
    if (i >= warm) us[i - warm] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  us.sort();
  const q = (f) => us[Math.min(n - 1, Math.floor(f * n))].toFixed(1);
  console.log(`node-bench latency n=${n} p50_us=${q(0.5)} p90_us=${q(0.9)} p99_us=${q(0.99)}`);
  await c.close();
}

async function throughput() {
  const c = new pmesh.Client({socket: a.socket});
  await c.connect();
  const window = +a.window, ms = +a.seconds * 1000;
  let done = 0, errors = 0, stop = false;
  for (let i = 0; i < 2000; i++) await lifecycle(c); // warm up the JIT
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  setTimeout(() => { stop = true; }, ms);
  async function lane() {
    while (!stop) {
      try {
        await lifecycle(c);
        done++;
      } catch (e) {
        errors++;
      }
    }
  }
  await Promise.all(Array.from({length: window}, lane));
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0); // all of this process's threads
  const cpuUs = (cpu.user + cpu.system) / Math.max(done, 1);
  console.log(`node-bench throughput window=${window} seconds=${s.toFixed(3)} lifecycles=${done} errors=${errors} ` +
              `per_s=${Math.round(done / s)} cpu_us_per_lifecycle=${cpuUs.toFixed(1)}`);
  await c.close();
}

async function worker() {
  const w = new pmesh.Worker({socket: a.socket, concurrency: +a.concurrency});
  w.function(a.function, (input) => input);
  const stop = () => w.close({grace: 1000});
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  w.once('registered', () => console.error(`node-bench worker: serving ${a.function} (concurrency ${a.concurrency})`));
  await w.run();
}

const modes = {latency, throughput, worker};
if (!a.socket || !modes[a.mode]) {
  console.error('usage: bench.mjs --socket PATH --mode latency|throughput|worker [--count N] [--window W] ' +
                '[--seconds S] [--function F --concurrency N]');
  process.exit(64);
}
await modes[a.mode]();
