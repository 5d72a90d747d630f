// A Node function on pmesh (the Knative Service in service.yaml runs it as
// an HTTP server; worker.yaml runs it as a worker). It takes orders: each
// order waits on an outside system (a human-task marketplace that answers,
// hours later, by POSTing to a callback URL), then goes through two chained
// steps served by pmesh workers, `price` and `receipt`.
//
//   POST /orders {"item": "..."}  -> 202 {"id", "callback_url", "settle_token", "receipt_id"}
//   GET  /orders/RECEIPT_ID       -> 200 the receipt once every step is done (504 while pending)
//
//   node function.mjs            HTTP server on $PORT (Knative's contract)
//   node function.mjs worker     serves price and receipt until SIGTERM
//   node function.mjs probe      exits 0 if the node's agent answers
//
// The node's agent is at $PMESH_SOCKET (/run/pmesh/agent.sock in the pod);
// callback URLs start with $PMESH_HTTP_URL, the agent's http_public_url.
import http from 'node:http';
import {Client, Worker, Rejected, WaitTimeout, NotFound, callbackUrl} from '@pmesh/client';

// Creates the promise the outside system settles, and chains the two steps
// on it. Nothing here waits for a reply: the ids are minted locally and the
// four requests are pipelined on one connection.
export async function startOrder(client, item, {publicUrl, timeout = '24h'} = {}) {
  const created = client.create({timeout, token: true, labels: {app: 'orders', item}});
  const priced = client.then(created, 'price', {timeout});
  const receipt = client.then(priced, 'receipt', {timeout});
  const {id, token} = await created;
  return {id, callback_url: callbackUrl(publicUrl, id), settle_token: token, receipt_id: await receipt};
}

// The chained steps: each gets the previous value (bytes) and returns the next.
export const steps = {
  price(input) {
    const answer = JSON.parse(input.toString()); // what the outside system posted
    if (!answer.accepted) throw new Error(`declined: ${answer.note || 'no reason'}`);
    return JSON.stringify({...answer, price_cents: 100 * String(answer.item || '').length});
  },
  async receipt(input) {
    const o = JSON.parse(input.toString());
    return `receipt: ${o.item} for ${(o.price_cents / 100).toFixed(2)}`;
  },
};

export function makeWorker(opts = {}) {
  const w = new Worker({concurrency: 16, ...opts});
  for (const [name, fn] of Object.entries(steps)) w.function(name, fn);
  return w;
}

// The HTTP function.
export function makeServer(client, {publicUrl} = {}) {
  return http.createServer(async (req, res) => {
    const send = (code, body) => {
      res.writeHead(code, {'content-type': 'application/json'});
      res.end(JSON.stringify(body));
    };
    try {
      if (req.method === 'POST' && req.url === '/orders') {
        let body = '';
        for await (const chunk of req) body += chunk;
        const {item} = JSON.parse(body || '{}');
        if (!item) return send(400, {error: 'item missing'});
        return send(202, await startOrder(client, item, {publicUrl}));
      }
      const m = /^\/orders\/([^/?]+)$/.exec(req.url);
      if (req.method === 'GET' && m) {
        const v = await client.wait(decodeURIComponent(m[1]), {timeout: '10s'});
        return send(200, {receipt: v.toString()});
      }
      send(404, {error: 'not found'});
    } catch (e) {
      if (e instanceof WaitTimeout) return send(504, {error: 'still pending'});
      if (e instanceof NotFound) return send(404, {error: e.message});
      if (e instanceof Rejected) return send(409, {error: e.reason, state: e.state});
      send(500, {error: String(e.message || e)});
    }
  });
}

const main = process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href;
if (main) {
  if (process.argv[2] === 'probe') {
    // Liveness/readiness of the worker pod: the node's agent answers.
    const c = new Client({connectTimeout: 2000, callTimeout: 3000});
    try {
      await c.status();
    } catch (e) {
      console.error(`agent: ${e.message}`);
      process.exitCode = 1;
    }
    await c.close();
  } else if (process.argv[2] === 'worker') {
    const w = makeWorker();
    process.on('SIGTERM', () => w.close());
    w.on('registered', ({node}) => console.log(`serving price, receipt on ${node}`));
    w.on('disconnected', (e) => console.log(`agent gone (${e.message}); reconnecting`));
    await w.run();
  } else {
    const client = new Client();
    const server = makeServer(client);
    server.listen(Number(process.env.PORT || 8080));
    process.on('SIGTERM', () => server.close(() => client.close()));
  }
}
