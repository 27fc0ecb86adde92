/* global fetch */
// HTTP pool fairness: how `qtune worker --http` shares work between model servers when one of
// them fails now and then, or dies and comes back. Two fake model servers (real node:http
// servers in this process, each answering after --latency ms) behind the pool, driven by
// --lanes requests at a time, for two policies measured in the same run:
//   breaker  today's pool (dist/worker/handlers/http-pool.js): a circuit breaker per endpoint
//            with its defaults (5 consecutive failures or ≥ 50 % of the last 20; 2 s cool-down;
//            one half-open probe)
//   eject-5s the policy before it, re-implemented here as the baseline: any failure takes the
//            endpoint out for 5 s
// Scenarios, each run --rounds times per policy (medians printed):
//   flaky  endpoint A answers 500 to 5 % of its requests (seeded), B never fails; --seconds long.
//          Prints A's share of the requests served (target ≥ 40 %).
//   dead   B refuses connections for --dead-seconds (plus 1.5 s more each round, so that it
//          comes back at another point of the policy's cycle), then listens again on its port
//          for --back-seconds. Prints B's share of the requests the pool sent after the first
//          second of its death (target ≤ 1 %), and the time from B listening again to B's first
//          served request (target ≤ 5 s).
// Needs `npm run build` first.
// Usage: node bench/http-pool.mjs [--rounds 3] [--lanes 16] [--latency 3] [--seconds 5]
//                                 [--dead-seconds 4] [--back-seconds 7] [--json]
import { createServer } from 'node:http';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { HttpEndpointPool } from '../dist/worker/handlers/http-pool.js';
import { benchOptions, fmt, median, printTable } from './lib.mjs';

const args = benchOptions(import.meta.url, {
  rounds: { type: 'string', default: '3' },
  lanes: { type: 'string', default: '16' },
  latency: { type: 'string', default: '3' },
  seconds: { type: 'string', default: '5' },
  'dead-seconds': { type: 'string', default: '4' },
  'back-seconds': { type: 'string', default: '7' },
  json: { type: 'boolean', default: false },
});
const ROUNDS = Number(args.rounds);
const LANES = Number(args.lanes);
const LATENCY_MS = Number(args.latency);
const FLAKY_S = Number(args.seconds);
const DEAD_S = Number(args['dead-seconds']);
const BACK_S = Number(args['back-seconds']);

/**
 * The pool as it was before the circuit breaker: least outstanding among the endpoints that
 * are up (ties round robin); a connection error, 5xx or 429 marks an endpoint down for 5 s and
 * the request moves on, trying each endpoint once.
 */
class EjectPool {
  #endpoints;
  #cursor = 0;
  constructor(urls, cooldownMs = 5_000) {
    this.cooldownMs = cooldownMs;
    this.#endpoints = urls.map((url) => ({ url, outstanding: 0, downUntil: 0 }));
  }
  async request(payload) {
    const body = JSON.stringify(payload);
    const tried = new Set();
    for (;;) {
      const e = this.#pick(tried);
      if (!e) break;
      tried.add(e);
      e.outstanding++;
      let response;
      let text;
      try {
        response = await fetch(e.url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        });
        text = await response.text();
      } catch {
        e.downUntil = Date.now() + this.cooldownMs;
        continue;
      } finally {
        e.outstanding--;
      }
      if (response.ok) return JSON.parse(text);
      if (response.status >= 500 || response.status === 429) {
        e.downUntil = Date.now() + this.cooldownMs;
        continue;
      }
      throw new Error(`HTTP ${response.status}`);
    }
    throw new Error('all endpoints failed');
  }
  #pick(tried) {
    const now = Date.now();
    const n = this.#endpoints.length;
    let best;
    let bestIndex = 0;
    let bestUp = false;
    for (let k = 0; k < n; k++) {
      const index = (this.#cursor + k) % n;
      const e = this.#endpoints[index];
      if (tried.has(e)) continue;
      const up = e.downUntil <= now;
      if (
        best === undefined ||
        (up && !bestUp) ||
        (up === bestUp && e.outstanding < best.outstanding)
      ) {
        best = e;
        bestIndex = index;
        bestUp = up;
      }
    }
    if (best) this.#cursor = (bestIndex + 1) % n;
    return best;
  }
}

const POLICIES = {
  breaker: (urls) => new HttpEndpointPool(urls),
  'eject-5s': (urls) => new EjectPool(urls),
};

/** A small seeded PRNG (mulberry32), so every policy sees the same failure pattern. */
function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A fake model server: answers after LATENCY_MS, with a 500 when `fail()` says so. */
async function modelServer(fail = () => false, port = 0) {
  const served = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      setTimeout(() => {
        if (fail()) {
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end('{"error":"transient"}');
          return;
        }
        served.push(performance.now());
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(body);
      }, LATENCY_MS);
    });
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const url = `http://127.0.0.1:${server.address().port}/v1/completions`;
  const close = () =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return { url, port: server.address().port, served, close };
}

/** Every fetch the pool makes, as [time, url]: the requests each endpoint was sent. */
const sent = [];
const realFetch = globalThis.fetch;
globalThis.fetch = (url, init) => {
  sent.push([performance.now(), String(url)]);
  return realFetch(url, init);
};

/** LANES loops of requests through `pool` until `until()` says stop; counts failed tasks. */
async function drive(pool, until) {
  let failedTasks = 0;
  let n = 0;
  const lane = async () => {
    while (!until()) {
      try {
        await pool.request({ n: n++ });
      } catch {
        failedTasks++;
      }
    }
  };
  await Promise.all(Array.from({ length: LANES }, lane));
  return failedTasks;
}

async function flaky(policy, seed) {
  const random = prng(seed);
  const a = await modelServer(() => random() < 0.05);
  const b = await modelServer();
  const pool = POLICIES[policy]([a.url, b.url]);
  const end = performance.now() + FLAKY_S * 1000;
  const failedTasks = await drive(pool, () => performance.now() >= end);
  await a.close();
  await b.close();
  const total = a.served.length + b.served.length;
  return { flakyShare: a.served.length / total, served: total, failedTasks };
}

async function dead(policy, deadS) {
  const a = await modelServer();
  // B's port, free again: nothing listens there until B comes back.
  const probe = await modelServer();
  const bPort = probe.port;
  const bUrl = probe.url;
  await probe.close();
  const pool = POLICIES[policy]([a.url, bUrl]);
  sent.length = 0;
  const t0 = performance.now();
  let stop = false;
  const driving = drive(pool, () => stop);
  await sleep(deadS * 1000);
  const b = await modelServer(() => false, bPort);
  const backAt = performance.now();
  await sleep(BACK_S * 1000);
  stop = true;
  const failedTasks = await driving;
  await a.close();
  await b.close();
  const deadWindow = sent.filter(([t]) => t >= t0 + 1000 && t < backAt);
  const toDead = deadWindow.filter(([, url]) => url === bUrl).length;
  const firstServed = b.served[0];
  return {
    deadShare: toDead / deadWindow.length,
    recoveryMs: firstServed === undefined ? Infinity : firstServed - backAt,
    backShare:
      b.served.length / (b.served.length + a.served.filter((t) => t >= backAt).length || 1),
    failedTasks,
  };
}

const runs = { breaker: [], 'eject-5s': [] };
for (let round = 0; round < ROUNDS; round++) {
  // Alternate which policy goes first.
  const order = round % 2 === 0 ? ['breaker', 'eject-5s'] : ['eject-5s', 'breaker'];
  for (const policy of order) {
    const f = await flaky(policy, 1234 + round);
    const d = await dead(policy, DEAD_S + 1.5 * round);
    runs[policy].push({ ...f, ...d });
    console.error(
      `round ${round + 1} ${policy}: flaky share ${(f.flakyShare * 100).toFixed(1)} %, ` +
        `dead share ${(d.deadShare * 100).toFixed(2)} %, recovery ${fmt(d.recoveryMs, 0)} ms`,
    );
  }
}

const summary = Object.fromEntries(
  Object.entries(runs).map(([policy, rs]) => [
    policy,
    {
      flakyShare: median(rs.map((r) => r.flakyShare)),
      deadShare: median(rs.map((r) => r.deadShare)),
      recoveryMs: median(rs.map((r) => r.recoveryMs)),
      servedPerSecond: median(rs.map((r) => r.served / FLAKY_S)),
      failedTasks: median(rs.map((r) => r.failedTasks)),
      runs: rs,
    },
  ]),
);

if (args.json) {
  console.log(JSON.stringify({ lanes: LANES, latencyMs: LATENCY_MS, rounds: ROUNDS, summary }));
} else {
  const pct = (x) => `${(x * 100).toFixed(x < 0.1 ? 2 : 1)} %`;
  printTable(
    `HTTP pool, 2 endpoints, ${LANES} requests at a time, ${LATENCY_MS} ms per request, median of ${ROUNDS}`,
    ['policy', 'flaky share (≥ 40 %)', 'dead share (≤ 1 %)', 'recovery (≤ 5 s)', 'worst recovery'],
    Object.entries(summary).map(([policy, s]) => [
      policy,
      pct(s.flakyShare),
      pct(s.deadShare),
      `${(s.recoveryMs / 1000).toFixed(2)} s`,
      `${(Math.max(...s.runs.map((r) => r.recoveryMs)) / 1000).toFixed(2)} s`,
    ]),
  );
  console.log(
    `node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, ${os.platform()}`,
  );
}
