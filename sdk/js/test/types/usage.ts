// Compiled by `npm run typecheck` (tsc --noEmit): the declarations cover the
// documented API.
import pmesh, {Client, Worker, Rejected, NotFound, type PromiseInfo} from '@pmesh/client';

async function main(): Promise<void> {
  const c = new Client({socket: '/tmp/x.sock', callTimeout: '5s'});
  const p = c.create({timeout: '30s', labels: {team: 'a'}});
  const q = c.then(p, 'resize', {timeout: 1000});
  await c.resolve(p, Buffer.from('x'));
  const v: Buffer = await c.wait(q, {timeout: '10s'});
  const both = c.all([p, 'x~1'], {timeout: '30s'});
  const vals: Array<string | Buffer> = await c.waitAll(both);
  const outs = await c.waitAllSettled(c.allSettled([p, q]));
  outs.forEach((o) => (o.state === 'resolved' ? o.value : o.reason));
  await c.wait(c.race([c.any([p]), q]));
  const caught = c.then(p, 'resize', {onReject: 'fallback'});
  pmesh.decodeValues(Buffer.from('[]')).forEach((x) => x.length);
  console.log(vals.length, await caught);
  const t = await c.create({token: true});
  const id: string = t.id;
  const info: PromiseInfo = await c.get(id);
  const page = await c.list({state: 'pending', label: ['team', 'a'], limit: 10});
  page.promises.forEach((x) => x.state);
  try {
    await c.wait('nope');
  } catch (e) {
    if (e instanceof Rejected) console.log(e.state, e.reason, e.failures.map((f) => f.id));
    if (e instanceof NotFound) console.log(e.code, e.errorName);
  }
  await c.close();
  const w = new Worker({concurrency: 16});
  w.function('resize', async (input: Buffer) => input.toString().toUpperCase());
  w.on('registered', ({node}) => console.log(node));
  const run: Promise<void> = w.run();
  await w.close();
  await run;
  console.log(v.length, info.state, new pmesh.Client());
}
void main;
// @ts-expect-error a duration is a number or a string
void new Client().wait("x", {timeout: {}});
