#!/usr/bin/env node
// BullMQ side of qtune's end-to-end benchmark. Starts nothing itself: it needs a
// Redis at REDIS_URL (default redis://127.0.0.1:6390; bench/redis.sh starts one).
//
// Throughput mode (default):
//   node bench/peers/bullmq-e2e.mjs [--tasks 20000] [--workers 2]
//   publishes N no-op jobs with addBulk in chunks of 1,000 (removeOnComplete),
//   W worker child processes (concurrency 50 each) consume them, and the producer
//   reads every result back through QueueEvents 'completed'.
// Rate mode:
//   node bench/peers/bullmq-e2e.mjs --rate [100] [--tasks 1000] [--workers 2]
//   publishes one job at a time at a steady R jobs/s, same workers and read-back.
//
// Prints ONE JSON line on stdout:
//   {"system":"bullmq","version":..,"tasks":N,"workers":W,"seconds":..,"tasksPerSec":..,
//    "startLatencyMs":{"p50":..,"p99":..},"e2eLatencyMs":{"p50":..,"p99":..}}
// (rate mode adds "mode":"rate","rate":R; throughput mode adds "mode":"throughput").
//
// Clocks: publish time is taken just before the job is handed to BullMQ (before the
// addBulk/add call for its chunk), start time in the worker as the handler begins,
// read time in the producer when the 'completed' event is delivered. All three use
// performance.timeOrigin + performance.now() (wall clock, sub-millisecond), which
// is comparable across processes on one machine.
import { fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { Queue, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';

const require = createRequire(import.meta.url);
const BULLMQ_VERSION = require('bullmq/package.json').version;
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6390';
const CONCURRENCY = 50;
const CHUNK = 1000;

const now = () => performance.timeOrigin + performance.now();

function parseArgs(argv) {
  const opts = { tasks: undefined, workers: 2, rate: undefined, timeoutS: 600, child: undefined };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = argv[i + 1];
    const hasValue = next !== undefined && !next.startsWith('--');
    const num = (name) => {
      const value = Number(next);
      if (!hasValue || !Number.isFinite(value) || value <= 0) {
        throw new Error(`${name} needs a positive number, got '${next ?? ''}'`);
      }
      i++;
      return value;
    };
    if (arg === '--tasks') opts.tasks = Math.floor(num('--tasks'));
    else if (arg === '--workers') opts.workers = Math.floor(num('--workers'));
    else if (arg === '--timeout') opts.timeoutS = num('--timeout');
    else if (arg === '--rate') opts.rate = hasValue ? num('--rate') : 100;
    else if (arg === '--child') {
      if (!hasValue) throw new Error('--child needs a queue name');
      opts.child = next;
      i++;
    } else throw new Error(`unknown argument '${arg}'`);
  }
  opts.tasks ??= opts.rate === undefined ? 20_000 : 1_000;
  return opts;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

const round3 = (x) => (x === null ? null : Math.round(x * 1000) / 1000);

function summary(values) {
  const sorted = Float64Array.from(values).sort();
  return { p50: round3(percentile(sorted, 50)), p99: round3(percentile(sorted, 99)) };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function redisConnection() {
  return { url: REDIS_URL, maxRetriesPerRequest: null };
}

/** Fail fast with a clear message when no Redis answers at REDIS_URL. */
async function checkRedis() {
  const client = new Redis(REDIS_URL, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 3000,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
  } catch (error) {
    throw new Error(
      `cannot reach Redis at ${REDIS_URL} (start one with bench/redis.sh start 6390 <dir>)`,
      {
        cause: error,
      },
    );
  } finally {
    client.disconnect();
  }
}

// ---------------------------------------------------------------- worker child
async function runChild(queueName) {
  const worker = new Worker(queueName, async () => ({ ok: true, startedAt: now() }), {
    connection: redisConnection(),
    concurrency: CONCURRENCY,
  });
  worker.on('error', (error) => console.error(`bullmq worker ${process.pid}: ${error.message}`));
  await worker.waitUntilReady();
  process.send({ type: 'ready' });
  process.on('message', async (msg) => {
    if (msg?.type === 'stop') {
      await worker.close();
      process.disconnect();
    }
  });
  process.on('disconnect', () => {
    // Parent went away without saying stop: do not linger.
    worker.close().finally(() => process.exit(0));
  });
}

function startChildren(queueName, count) {
  const children = [];
  const ready = [];
  for (let i = 0; i < count; i++) {
    const child = fork(process.argv[1], ['--child', queueName], {
      env: { ...process.env, REDIS_URL },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(child);
    ready.push(
      new Promise((resolve, reject) => {
        child.once('message', (msg) =>
          msg?.type === 'ready'
            ? resolve()
            : reject(new Error(`worker ${i}: ${JSON.stringify(msg)}`)),
        );
        child.once('exit', (code) =>
          reject(new Error(`worker ${i} exited early with code ${code}`)),
        );
      }),
    );
  }
  return { children, ready: Promise.all(ready) };
}

async function stopChildren(children) {
  await Promise.all(
    children.map(
      (child) =>
        new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve();
          const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
          child.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          if (child.connected) child.send({ type: 'stop' });
          else child.kill('SIGTERM');
        }),
    ),
  );
}

// ---------------------------------------------------------------- producer
async function runProducer(opts) {
  await checkRedis();
  const queueName = `qtune-bench-${process.pid}-${Date.now()}`;
  const n = opts.tasks;
  const queue = new Queue(queueName, {
    connection: redisConnection(),
    // The events stream must hold every 'completed' event until QueueEvents reads
    // it; the default trim (~10,000 events) would drop results of a 20,000-job run.
    streams: { events: { maxLen: Math.max(10_000, n * 10) } },
    defaultJobOptions: { removeOnComplete: true },
  });
  // The queue name is fresh, so reading the events stream from its start is safe
  // and cannot miss the first 'completed' events.
  const events = new QueueEvents(queueName, { connection: redisConnection(), lastEventId: '0-0' });
  const { children, ready } = startChildren(queueName, opts.workers);

  const publishedAt = new Map(); // jobId -> publish time
  const results = new Map(); // jobId -> { startedAt, readAt }
  let failed = 0;
  let firstFailure;
  let resolveDone;
  const done = new Promise((resolve) => (resolveDone = resolve));

  events.on('completed', ({ jobId, returnvalue }) => {
    const readAt = now();
    const value = typeof returnvalue === 'string' ? JSON.parse(returnvalue) : returnvalue;
    if (value?.ok !== true) {
      failed++;
      firstFailure ??= `job ${jobId} returned ${JSON.stringify(value)}`;
    }
    results.set(jobId, { startedAt: value?.startedAt, readAt });
    if (results.size + failed >= n) resolveDone();
  });
  events.on('failed', ({ jobId, failedReason }) => {
    failed++;
    firstFailure ??= `job ${jobId} failed: ${failedReason}`;
    if (results.size + failed >= n) resolveDone();
  });

  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(`timed out after ${opts.timeoutS} s with ${results.size}/${n} results read`),
        ),
      opts.timeoutS * 1000,
    );
  });

  try {
    await Promise.all([queue.waitUntilReady(), events.waitUntilReady(), ready]);
    // Let the workers' blocking reads settle before the clock starts.
    await sleep(200);

    const t0 = now();
    const publishing = (async () => {
      if (opts.rate === undefined) {
        for (let start = 0; start < n; start += CHUNK) {
          const size = Math.min(CHUNK, n - start);
          const jobs = Array.from({ length: size }, (_, k) => ({
            name: 'noop',
            data: { i: start + k },
          }));
          const at = now();
          const added = await queue.addBulk(jobs);
          for (const job of added) publishedAt.set(job.id, at);
        }
      } else {
        const interval = 1000 / opts.rate;
        const pending = [];
        for (let i = 0; i < n; i++) {
          const due = t0 + i * interval;
          const wait = due - now();
          if (wait > 0) await sleep(wait);
          const at = now();
          pending.push(queue.add('noop', { i }).then((job) => publishedAt.set(job.id, at)));
        }
        await Promise.all(pending);
      }
    })();
    await Promise.race([Promise.all([publishing, done]), timeout]);
    let t1 = t0;
    for (const r of results.values()) if (r.readAt > t1) t1 = r.readAt;
    if (failed > 0) throw new Error(`${failed} of ${n} jobs failed; first: ${firstFailure}`);

    const start = [];
    const e2e = [];
    for (const [jobId, r] of results) {
      const at = publishedAt.get(jobId);
      if (at === undefined)
        throw new Error(`result for job ${jobId} that this run did not publish`);
      start.push(r.startedAt - at);
      e2e.push(r.readAt - at);
    }
    const seconds = (t1 - t0) / 1000;
    const out = {
      system: 'bullmq',
      version: BULLMQ_VERSION,
      mode: opts.rate === undefined ? 'throughput' : 'rate',
      ...(opts.rate === undefined ? {} : { rate: opts.rate }),
      tasks: n,
      workers: opts.workers,
      seconds: round3(seconds),
      tasksPerSec: Math.round((n / seconds) * 10) / 10,
      startLatencyMs: summary(start),
      e2eLatencyMs: summary(e2e),
    };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } finally {
    clearTimeout(timer);
    await stopChildren(children);
    await events.close();
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
  }
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (error) {
  console.error(`bullmq-e2e: ${error.message}`);
  process.exit(2);
}
if (opts.child !== undefined) {
  runChild(opts.child).catch((error) => {
    console.error(`bullmq worker ${process.pid}: ${error.stack ?? error}`);
    process.exit(1);
  });
} else {
  runProducer(opts).then(
    () => process.exit(0),
    (error) => {
      console.error(
        `bullmq-e2e: ${error.message}${error.cause ? ` (${error.cause.message ?? error.cause})` : ''}`,
      );
      process.exit(1);
    },
  );
}
