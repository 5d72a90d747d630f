// bench/peers/service.mjs: the Node side of scripts/bench-peers.
//
// One process, two loopback listeners:
//   - a Restate service deployment (HTTP/2, what restate-server invokes):
//       Step.step(v)         the trivial function: returns v + "."
//       Chain.run({v,steps}) a handler making `steps` durable calls to Step.step
//       Waiter.wait(nonce)   creates an awakeable, hands its id to the driver
//                            below (in-process, the cheapest hand-off there is)
//                            and returns the value the awakeable is resolved with
//   - a control listener (HTTP/1.1) through which scripts/bench-peers runs one
//     measured phase at a time and gets its figures back as JSON:
//       GET /lifecycle?target=restate&ingress=URL&count=N&inflight=W
//       GET /lifecycle?target=pmesh&http=URL&public=URL&count=N&inflight=W
//       GET /chain?ingress=URL&count=N&inflight=W&steps=S
//     inflight=1 is the sequential run (latency), more is the throughput run.
//     Every operation is checked: a settled value must come back as sent, a
//     chain must end in its start value followed by `steps` dots. The answer:
//       {"ops":N,"errors":E,"seconds":S,"rate":R,"p50_ms":A,"p99_ms":B,"first_error":".."}
//
// Prints "ready service_port=P control_port=Q" on stdout once both listen
// (P is 0 with PEERS_RESTATE=0: no Restate services, no SDK needed).
// Stops on SIGTERM / SIGINT.
import http from "node:http";
import http2 from "node:http2";

// The SDK calls Promise.withResolvers (Node 22); Debian's Node is 20. The
// standard semantics, for the SDK's calls at request time.
if (typeof Promise.withResolvers !== "function") {
  Promise.withResolvers = function withResolvers() {
    let resolve, reject;
    const promise = new this((res, rej) => {
      resolve = res;
      reject = rej;
    });
    return { promise, resolve, reject };
  };
}

// ---- the Restate services -----------------------------------------------------------------

// PEERS_RESTATE=0: only the control listener (the pmesh lifecycle), without
// the SDK (then it need not be installed).
const withRestate = process.env.PEERS_RESTATE !== "0";
const restate = withRestate ? await import("@restatedev/restate-sdk") : null;
const stub = { service: () => null };
const sdk = restate || stub;

const step = sdk.service({
  name: "Step",
  handlers: {
    step: async (_ctx, v) => v + ".",
  },
});

const chain = sdk.service({
  name: "Chain",
  handlers: {
    run: async (ctx, req) => {
      let v = req.v;
      for (let i = 0; i < req.steps; i++) v = await ctx.serviceClient(step).step(v);
      return v;
    },
  },
});

// nonce -> the driver's callback that receives the awakeable id.
const handoff = new Map();

const waiter = sdk.service({
  name: "Waiter",
  handlers: {
    wait: async (ctx, nonce) => {
      const { id, promise } = ctx.awakeable();
      // Not journalled: on a replay the id is handed over again and ignored.
      const give = handoff.get(nonce);
      if (give) give(id);
      return await promise;
    },
  },
});

// ---- an HTTP/1.1 client with kept-alive connections ----------------------------------------

const agent = new http.Agent({ keepAlive: true, maxSockets: 1024, maxFreeSockets: 1024 });

function request(method, url, body, headers = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(body);
    const h = { ...headers };
    if (data) {
      h["content-type"] = "application/json";
      h["content-length"] = data.length;
    }
    const req = http.request(url, { method, agent, headers: h }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
      res.on("error", reject);
    });
    req.on("error", reject);
    if (data) req.write(data);
    req.end();
  });
}

function expect(ok, what) {
  if (!ok) throw new Error(what);
}

// ---- the operations ----------------------------------------------------------------------------

let serial = 0;
const tag = Math.random().toString(36).slice(2, 8);

// Restate: an ingress call to Waiter.wait starts the handler, which creates
// the awakeable and hands its id over; the outside system resolves it over
// HTTP; the ingress call answers with the value.
async function lifecycleRestate(p) {
  const n = ++serial;
  const nonce = `n-${tag}-${n}`;
  const value = `v-${tag}-${n}-${Math.random().toString(36).slice(2)}`;
  const callP = request("POST", `${p.ingress}/Waiter/wait`, JSON.stringify(nonce));
  let id;
  try {
    id = await new Promise((resolve, reject) => {
      handoff.set(nonce, resolve);
      callP.then((r) => reject(new Error(`Waiter.wait answered HTTP ${r.status} before the hand-off: ${r.body}`)), reject);
    });
  } finally {
    handoff.delete(nonce);
  }
  const res = await request("POST", `${p.ingress}/restate/awakeables/${id}/resolve`, JSON.stringify(value));
  expect(res.status >= 200 && res.status < 300, `awakeable resolve: HTTP ${res.status} ${res.body}`);
  const out = await callP;
  expect(out.status === 200, `Waiter.wait: HTTP ${out.status} ${out.body}`);
  expect(JSON.parse(out.body) === value, `Waiter.wait returned ${out.body}, sent ${value}`);
}

// pmesh: the client creates a promise on the full listener (with a settle
// token in the answer) and long-polls it; the outside system settles it with
// the token on the public listener; the long-poll answers with the value.
async function lifecyclePmesh(p) {
  const n = ++serial;
  const value = `v-${tag}-${n}-${Math.random().toString(36).slice(2)}`;
  const c = await request("POST", `${p.http}/v1/promises`, "{}");
  expect(c.status === 201, `create: HTTP ${c.status} ${c.body}`);
  const { id, settle_token: token } = JSON.parse(c.body);
  expect(id && token, `create gave no id or settle token: ${c.body}`);
  const path = `/v1/promises/${encodeURIComponent(id)}`;
  const waitP = request("GET", `${p.http}${path}?wait=30s`);
  waitP.catch(() => {}); // awaited below; a failed settle must not leave it unhandled
  const res = await request("POST", `${p.public}${path}/resolve`, JSON.stringify({ value }), {
    authorization: `Bearer ${token}`,
  });
  expect(res.status === 200, `resolve: HTTP ${res.status} ${res.body}`);
  const got = await waitP;
  expect(got.status === 200, `long-poll: HTTP ${got.status} ${got.body}`);
  const pr = JSON.parse(got.body);
  expect(pr.state === "resolved" && pr.value === value, `long-poll returned ${got.body}, sent ${value}`);
}

async function chainRestate(p) {
  const n = ++serial;
  const start = `c-${tag}-${n}-`;
  const want = start + ".".repeat(p.steps);
  const out = await request("POST", `${p.ingress}/Chain/run`, JSON.stringify({ v: start, steps: p.steps }));
  expect(out.status === 200, `Chain.run: HTTP ${out.status} ${out.body}`);
  expect(JSON.parse(out.body) === want, `Chain.run returned ${out.body}, expected "${want}"`);
}

// Runs `count` operations with `inflight` of them at a time.
async function measure(op, p) {
  const lat = [];
  let errors = 0;
  let firstError = "";
  let next = 0;
  const t0 = process.hrtime.bigint();
  async function lane() {
    while (next < p.count) {
      next++;
      const s = process.hrtime.bigint();
      try {
        await op(p);
        lat.push(Number(process.hrtime.bigint() - s) / 1e6);
      } catch (e) {
        errors++;
        if (!firstError) firstError = String(e.message || e);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(p.inflight, p.count) }, lane));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  lat.sort((a, b) => a - b);
  const pct = (q) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * q))] : 0);
  return {
    ops: lat.length,
    errors,
    seconds: +seconds.toFixed(3),
    rate: +(lat.length / seconds).toFixed(1),
    p50_ms: +pct(0.5).toFixed(3),
    p99_ms: +pct(0.99).toFixed(3),
    first_error: firstError,
  };
}

// ---- the control listener -------------------------------------------------------------------

const control = http.createServer(async (req, res) => {
  const u = new URL(req.url, "http://control");
  const q = Object.fromEntries(u.searchParams);
  const p = {
    ...q,
    count: parseInt(q.count || "100", 10),
    inflight: parseInt(q.inflight || "1", 10),
    steps: parseInt(q.steps || "10", 10),
  };
  let op = null;
  if (u.pathname === "/lifecycle" && q.target === "restate" && q.ingress) op = lifecycleRestate;
  else if (u.pathname === "/lifecycle" && q.target === "pmesh" && q.http && q.public) op = lifecyclePmesh;
  else if (u.pathname === "/chain" && q.ingress) op = chainRestate;
  if (!op || !(p.count > 0) || !(p.inflight > 0)) {
    res.writeHead(400).end("bad request\n");
    return;
  }
  const out = await measure(op, p);
  res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(out) + "\n");
});

const services = withRestate
  ? http2.createServer(restate.createEndpointHandler({ services: [step, chain, waiter] }))
  : null;

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server.address().port));
  });
}

const servicePort = services ? await listen(services) : 0;
const controlPort = await listen(control);
process.stdout.write(`ready service_port=${servicePort} control_port=${controlPort}\n`);

function stop() {
  control.close();
  if (services) services.close();
  agent.destroy();
  process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
