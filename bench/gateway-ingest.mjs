#!/usr/bin/env node
// Bulk ingest through the HTTP gateway, next to a hand-rolled HTTP agent, in the same run.
//
//   node bench/gateway-ingest.mjs [--amqp [URL]] [--duration 10] [--connections 10]
//                                 [--batch 1000] [--only gateway|naive|raw] [--json]
//                                 [--queue-type quorum|classic] [--soft-limit 512]
//
// Starts `qtune serve` (the built CLI, dist/) over a fresh embedded broker in a temp dir, with a
// token, and drives it with autocannon: POST /v1/queues/<q>/tasks, each body a JSON array of
// --batch small payloads, --connections connections for --duration seconds. Prints payloads/s
// (requests/s × batch) and request latency p50/p99, and checks that the queue holds every
// accepted payload. Then the same load against the naive design: a tiny node:http server that
// checks the token and publishes each payload on its own (one publish call, awaited, per
// payload) with the embedded broker or amqplib (a confirm channel, waiting for each confirm).
// With --amqp URL both run against that RabbitMQ; --amqp alone starts a throwaway node with
// test/support/rabbitmq.mjs. On RabbitMQ a third row is the ceiling: raw amqplib publishing
// envelopes of the same size over one confirm channel, 1000 unconfirmed at most, for the same
// duration. --queue-type classic|quorum (default quorum, qtune's default) picks the queue type
// for all three. A node the bench starts runs with quorum_commands_soft_limit --soft-limit
// (default 512, what docs/brokers/amqp.md advises for bulk ingest; 32 is RabbitMQ's default).
// Needs `npm run build` first.
import { spawn } from 'node:child_process';
import { randomUUID as randomUUIDSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { printTable, usageOf } from './lib.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);
const CLI = path.join(ROOT, 'dist/cli/main.js');
const TOKEN = 'bench-producer-token-0123456789';

function parseArgs(argv) {
  const opts = {
    amqp: undefined,
    duration: 10,
    connections: 10,
    batch: 1000,
    only: undefined,
    json: false,
    naiveServer: undefined,
    queueType: 'quorum',
    softLimit: 512,
  };
  const numeric = {
    '--duration': 'duration',
    '--connections': 'connections',
    '--batch': 'batch',
    '--soft-limit': 'softLimit',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg in numeric) {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value <= 0)
        throw new Error(`${arg} needs a positive integer, got '${argv[i] ?? ''}'`);
      opts[numeric[arg]] = value;
    } else if (arg === '--amqp') {
      const next = argv[i + 1];
      opts.amqp = next !== undefined && /^amqps?:\/\//.test(next) ? argv[++i] : 'start';
    } else if (arg === '--only') {
      opts.only = argv[++i];
      if (!['gateway', 'naive', 'raw'].includes(opts.only))
        throw new Error(`--only takes gateway, naive or raw, got '${opts.only ?? ''}'`);
    } else if (arg === '--queue-type') {
      opts.queueType = argv[++i];
      if (opts.queueType !== 'quorum' && opts.queueType !== 'classic')
        throw new Error(`--queue-type takes quorum or classic, got '${opts.queueType ?? ''}'`);
    } else if (arg === '--json') opts.json = true;
    else if (arg === '--naive-server') {
      opts.naiveServer = argv[++i];
      opts.queueType = argv[++i] ?? 'quorum';
    } else if (arg === '--help' || arg === '-h') {
      console.log(usageOf(import.meta.url));
      process.exit(0);
    } else throw new Error(`unknown argument '${arg}' (try --help)`);
  }
  return opts;
}

/** Starts a child and resolves with its first stderr/stdout match of `pattern`. */
function startChild(args, env, pattern, what) {
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not start within 30 s: ${out}`));
    }, 30_000);
    const onData = (chunk) => {
      out += chunk;
      const m = pattern.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, match: m[1], output: () => out });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with ${code}: ${out}`));
    });
  });
}

async function stopChild(child) {
  if (child.exitCode !== null) return child.exitCode;
  const done = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const code = await done;
  clearTimeout(timer);
  return code;
}

function drive(url, body, opts) {
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url,
        method: 'POST',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body,
        connections: opts.connections,
        duration: opts.duration,
        timeout: 60,
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
    process.once('SIGINT', () => instance.stop());
  });
}

function summarize(system, result, opts) {
  const ok = result['2xx'];
  return {
    system,
    requests: ok,
    errors: result.errors + result.timeouts + result.non2xx,
    seconds: result.duration,
    payloadsPerSec: Math.round((ok * opts.batch) / result.duration),
    latencyMs: { p50: result.latency.p50, p99: result.latency.p99 },
  };
}

async function queueCount(url, queue) {
  const res = await globalThis.fetch(`${url}/v1/queues/${queue}`, {
    headers: { authorization: `Bearer ${TOKEN}` },
  });
  const stats = await res.json();
  return stats.ready + stats.delayed + stats.inFlight;
}

// --- the naive agent (child process mode) ----------------------------------------------------

async function naiveServer(brokerUrl, queueType) {
  const { randomUUID } = await import('node:crypto');
  let publishOne;
  let close;
  const queue = 'bench-naive';
  if (/^amqps?:/.test(brokerUrl)) {
    const amqplib = (await import('amqplib')).default;
    const conn = await amqplib.connect(brokerUrl);
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': queueType } });
    publishOne = async (body) => {
      ch.sendToQueue(queue, Buffer.from(body), { persistent: true, messageId: randomUUID() });
      await ch.waitForConfirms();
    };
    close = () => conn.close();
  } else {
    const { EmbeddedBroker } = await import(path.join(ROOT, 'dist/broker/embedded/index.js'));
    const broker = await EmbeddedBroker.open({ path: brokerUrl });
    await broker.declareQueue(queue);
    publishOne = (body) => broker.publish(queue, [{ body }]);
    close = () => broker.close();
  }
  const server = createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${TOKEN}`) {
      res.writeHead(401).end();
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      try {
        const payloads = JSON.parse(Buffer.concat(chunks).toString('utf8'));
        for (const payload of payloads) {
          const id = randomUUID();
          const env = { qtune: 1, id, type: 'task', payload, replyTo: `${queue}.results` };
          await publishOne(JSON.stringify(env));
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ accepted: payloads.length }));
      } catch (err) {
        res.writeHead(500).end(String(err));
      }
    });
  });
  server.listen(0, '127.0.0.1', () => console.log(`naive agent on port ${server.address().port}`));
  process.on('SIGTERM', () => server.close(() => close().then(() => process.exit(0))));
}

/** Deletes a RabbitMQ queue, so that the next system starts on an empty node. */
async function deleteAmqpQueue(url, queue) {
  const amqplib = (await import('amqplib')).default;
  const conn = await amqplib.connect(url);
  try {
    const ch = await conn.createChannel();
    await ch.deleteQueue(queue);
  } finally {
    await conn.close();
  }
}

// --- the ceiling: raw amqplib ------------------------------------------------------------------

/** Confirmed publishes/s of raw amqplib to a fresh queue, `window` unconfirmed at most. */
async function rawCeiling(url, queueType, body, seconds, window = 1000) {
  const amqplib = (await import('amqplib')).default;
  const { randomUUID } = await import('node:crypto');
  const conn = await amqplib.connect(url);
  try {
    const ch = await conn.createConfirmChannel();
    const queue = `bench-raw-${randomUUID()}`;
    await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': queueType } });
    const run = async (ms) => {
      const until = Date.now() + ms;
      let confirmed = 0;
      let unconfirmed = 0;
      let wake;
      const started = performance.now();
      while (Date.now() < until) {
        while (unconfirmed >= window) await new Promise((r) => (wake = r));
        unconfirmed++;
        ch.sendToQueue(queue, body, { persistent: true, messageId: randomUUID() }, (err) => {
          unconfirmed--;
          if (!err) confirmed++;
          wake?.();
        });
        if (unconfirmed % 100 === 0) await new Promise((r) => setImmediate(r));
      }
      await ch.waitForConfirms();
      return Math.round(confirmed / ((performance.now() - started) / 1000));
    };
    await run(2_000); // warm-up
    const rate = await run(seconds * 1000);
    await ch.deleteQueue(queue);
    return rate;
  } finally {
    await conn.close();
  }
}

// --- driver ------------------------------------------------------------------------------------

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.naiveServer !== undefined) return naiveServer(opts.naiveServer, opts.queueType);

  const dir = mkdtempSync(path.join(tmpdir(), 'qtune-gateway-bench-'));
  let rabbit;
  const cleanups = [() => rmSync(dir, { recursive: true, force: true })];
  const cleanup = async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    let brokerUrl = path.join(dir, 'broker.db');
    let naiveBroker = path.join(dir, 'naive.db');
    if (opts.amqp === 'start') {
      const { startRabbit } = await import(path.join(ROOT, 'test/support/rabbitmq.mjs'));
      rabbit = await startRabbit({
        advanced: { quorum_commands_soft_limit: String(opts.softLimit) },
      });
      cleanups.push(() => rabbit.stop());
      // The title names the limit: check that the node runs with it.
      const env = await rabbit.ctl([
        'eval',
        'application:get_env(rabbit, quorum_commands_soft_limit).',
      ]);
      if (env.trim() !== `{ok,${opts.softLimit}}`)
        throw new Error(
          `the node runs with quorum_commands_soft_limit ${env.trim()}, not ${opts.softLimit}`,
        );
      opts.amqp = rabbit.url;
    }
    if (opts.amqp !== undefined) {
      brokerUrl = opts.amqp;
      naiveBroker = opts.amqp;
    }
    const payloads = Array.from({ length: opts.batch }, (_, i) => ({ n: i, text: 'hello world' }));
    const body = JSON.stringify(payloads);
    const rows = [];

    if (opts.only === undefined || opts.only === 'gateway') {
      const gw = await startChild(
        [CLI, 'serve', '--port', '0', '--broker', brokerUrl, '--rate-limit', '1000000'],
        { QTUNE_TOKENS: `bench:producer:${TOKEN}` },
        /gateway listening on (http:\/\/[\d.:]+)/,
        'qtune serve',
      );
      cleanups.push(() => stopChild(gw.child));
      const queue = 'bench-gateway';
      if (opts.amqp !== undefined) {
        const res = await globalThis.fetch(`${gw.match}/v1/queues/${queue}`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify({ type: opts.queueType }),
        });
        if (!res.ok) throw new Error(`declaring ${queue}: HTTP ${res.status} ${await res.text()}`);
      }
      // Warm up (declares the queues, JIT), then measure.
      await drive(`${gw.match}/v1/queues/${queue}/tasks`, body, { ...opts, duration: 2 });
      const before = await queueCount(gw.match, queue);
      const result = await drive(`${gw.match}/v1/queues/${queue}/tasks`, body, opts);
      const row = summarize('qtune gateway', result, opts);
      // Requests still in flight when autocannon stops are stored but not counted as answered.
      await new Promise((r) => setTimeout(r, 1_000));
      const stored = (await queueCount(gw.match, queue)) - before;
      row.storedOk = stored >= row.requests * opts.batch;
      if (!row.storedOk) console.error(`stored ${stored}, answered ${row.requests * opts.batch}`);
      rows.push(row);
      await stopChild(gw.child);
      if (opts.amqp !== undefined) await deleteAmqpQueue(opts.amqp, queue);
    }

    if (opts.only === undefined || opts.only === 'naive') {
      const naive = await startChild(
        [fileURLToPath(import.meta.url), '--naive-server', naiveBroker, opts.queueType],
        {},
        /naive agent on port (\d+)/,
        'the naive agent',
      );
      cleanups.push(() => stopChild(naive.child));
      const url = `http://127.0.0.1:${naive.match}/tasks`;
      await drive(url, body, { ...opts, duration: 2 });
      const result = await drive(url, body, opts);
      rows.push(summarize('naive agent (1 publish per payload)', result, opts));
      await stopChild(naive.child);
      if (opts.amqp !== undefined) await deleteAmqpQueue(opts.amqp, 'bench-naive');
    }

    if (opts.amqp !== undefined && (opts.only === undefined || opts.only === 'raw')) {
      // The same envelope the gateway writes for one payload.
      const envelope = JSON.stringify({
        qtune: 1,
        id: randomUUIDSync(),
        type: 'task',
        createdAt: Date.now(),
        payload: payloads[0],
        replyTo: 'bench-gateway.results',
      });
      const rate = await rawCeiling(
        opts.amqp,
        opts.queueType,
        Buffer.from(envelope),
        opts.duration,
      );
      rows.push({ system: 'raw amqplib (confirms, window 1000)', payloadsPerSec: rate });
    }

    const broker =
      opts.amqp === undefined
        ? 'embedded (SQLite)'
        : rabbit === undefined
          ? `RabbitMQ (${opts.queueType} queues)`
          : `RabbitMQ (${opts.queueType} queues, quorum_commands_soft_limit ${opts.softLimit})`;
    if (opts.json) {
      for (const r of rows) console.log(JSON.stringify({ ...r, broker, batch: opts.batch }));
    }
    printTable(
      `Bulk ingest on ${broker}: ${opts.connections} connections, ${opts.duration} s, ${opts.batch} payloads per request`,
      ['system', 'payloads/s', 'req p50 ms', 'req p99 ms', 'requests', 'errors', 'answered stored'],
      rows.map((r) => [
        r.system,
        r.payloadsPerSec.toLocaleString('en-US'),
        r.latencyMs?.p50 ?? '—',
        r.latencyMs?.p99 ?? '—',
        r.requests ?? '—',
        r.errors ?? '—',
        r.storedOk === undefined ? '—' : r.storedOk ? 'yes' : 'NO',
      ]),
    );
    const row = (prefix) => rows.find((r) => r.system.startsWith(prefix));
    const [gateway, naive, raw] = [row('qtune'), row('naive'), row('raw')];
    if (gateway && naive) {
      console.log(
        `\ngateway / naive: ${(gateway.payloadsPerSec / naive.payloadsPerSec).toFixed(1)}x`,
      );
    }
    if (gateway && raw) {
      console.log(
        `gateway / raw ceiling: ${Math.round((100 * gateway.payloadsPerSec) / raw.payloadsPerSec)}%`,
      );
    }
    console.log(`node ${process.version}, ${(await import('node:os')).cpus().length} CPUs`);
  } finally {
    await cleanup();
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(1);
});
