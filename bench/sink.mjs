// Sink throughput: N results waiting in a result queue of the embedded broker, drained by the
// sink into a result table in SQLite and in PostgreSQL (a throwaway server on loopback, fsync
// and synchronous_commit on). Also the store's upsert alone, without the broker.
// "sink results/s" is the whole drain, from Sink.start to the last row; "running sink" is from
// the first stored batch to the last, as for a sink that is already running when results come.
// Two shapes of row id: job keys, the SHA-256-derived keys `qtune job submit --key` gives items
// (in no particular order, as in a real job), and sequential keys (`item-0`, `item-1`, ...).
// With --gateway the sink reads the results through a `qtune serve` HTTP gateway (a child
// process on loopback, over the same broker file), as a sink away from the broker would.
// Needs `npm run build` first.
// Usage: node bench/sink.mjs [--results N] [--rounds R] [--batch ROWS (default: the sink's)] [--keys job,seq]
//                            [--no-postgres] [--gateway]
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { EmbeddedBroker } from '../dist/broker/embedded/index.js';
import { openBroker } from '../dist/broker/open.js';
import { keyOf } from '../dist/protocol/key.js';
import { resultMessage, resultQueueOf } from '../dist/patterns/work-queue.js';
import { Sink } from '../dist/sink/sink.js';
import { PostgresStore } from '../dist/store/postgres/index.js';
import { SqliteStore } from '../dist/store/sqlite/index.js';
import { postgresAvailable, startPostgres } from '../test/support/postgres.mjs';
import { freePort } from '../test/support/rabbitmq.mjs';
import { benchOptions, fmt, median, printTable } from './lib.mjs';

const args = benchOptions(import.meta.url, {
  results: { type: 'string', default: '100000' },
  rounds: { type: 'string', default: '3' },
  'no-postgres': { type: 'boolean', default: false },
  batch: { type: 'string' },
  keys: { type: 'string', default: 'job,seq' },
  gateway: { type: 'boolean', default: false },
});
const N = Number(args.results);
const ROUNDS = Number(args.rounds);
const KEY_SHAPES = {
  job: { label: 'job keys', key: (i) => keyOf({ company: `Company ${i}` }, ['company']) },
  seq: { label: 'sequential keys', key: (i) => `item-${i}` },
};
const shapes = args.keys.split(',').map((k) => {
  if (!(k in KEY_SHAPES)) throw new Error(`--keys takes job and/or seq, got '${k}'`);
  return KEY_SHAPES[k];
});
/** Row key of result i in the shape being measured. */
let keyFor = KEY_SHAPES.job.key;

function result(i) {
  const now = Date.now();
  return {
    taskId: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    key: keyFor(i),
    ok: true,
    value: { text: `Company ${i} makes things people like.`, tokens: 12 },
    worker: {
      host: 'gpu-box-1',
      pid: 4242,
      id: 'w1',
      gpus: [{ name: 'NVIDIA L4', memoryMiB: 23034 }],
    },
    startedAt: now - 250,
    finishedAt: now,
    durationMs: 250,
    attempt: 1,
  };
}

function row(i) {
  const r = result(i);
  return {
    id: r.key,
    taskId: r.taskId,
    key: r.key,
    ok: true,
    value: r.value,
    host: 'gpu-box-1',
    pid: 4242,
    workerId: 'w1',
    gpu: 'NVIDIA L4 (23034 MiB)',
    attempt: 1,
    durationMs: 250,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
  };
}

let brokers = 0;

/**
 * Starts `qtune serve` on loopback over the broker file at `path` (no auth: loopback only) and
 * opens a gateway broker on it; returns it with a stop function.
 */
async function viaGateway(path) {
  const port = await freePort();
  const cli = join(import.meta.dirname, '../dist/cli/main.js');
  const serve = spawn(
    process.execPath,
    [cli, 'serve', '--port', String(port), '--no-auth', '--broker', path],
    { stdio: 'ignore' },
  );
  const url = `http://127.0.0.1:${port}`;
  for (let tries = 0; ; tries++) {
    const ok = await globalThis.fetch(`${url}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    if (tries > 200) throw new Error('qtune serve did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  const broker = await openBroker(url);
  return {
    broker,
    async stop() {
      await broker.close();
      serve.kill('SIGTERM');
      await once(serve, 'exit');
    },
  };
}

/**
 * Results/s of the sink draining N results into `store`: over the whole drain from Sink.start,
 * and once running (from its first stored batch to the last: without the start of its writer
 * thread and the first lease).
 */
async function sinkRound(store, dir, table) {
  const path = join(dir, `broker-${++brokers}.db`);
  const broker = await EmbeddedBroker.open({ path });
  const queue = `q_${table}`;
  await broker.declareQueue(resultQueueOf(queue));
  for (let i = 0; i < N; i += 1000) {
    const msgs = [];
    for (let j = i; j < Math.min(N, i + 1000); j++) msgs.push(resultMessage(result(j)));
    await broker.publish(resultQueueOf(queue), msgs);
  }
  const gateway = args.gateway ? await viaGateway(path) : undefined;
  const t0 = performance.now();
  const sink = await Sink.start({
    broker: gateway?.broker ?? broker,
    store,
    queue,
    table,
    ...(args.batch !== undefined && { batchSize: Number(args.batch) }),
  });
  let first;
  sink.once('batch', (b) => (first = { at: performance.now(), rows: b.rows }));
  while (sink.stats.stored < N) await new Promise((r) => setTimeout(r, 5));
  const end = performance.now();
  const seconds = (end - t0) / 1000;
  await sink.stop();
  await gateway?.stop();
  await broker.close();
  const counts = await store.results.resultCounts(table);
  if (counts.total !== N) throw new Error(`expected ${N} rows in ${table}, found ${counts.total}`);
  return { whole: N / seconds, running: (N - first.rows) / ((end - first.at) / 1000) };
}

/** Rows/s of upsertResults alone, batches of 1000. */
async function upsertRound(store, table) {
  await store.results.ensureResultTable(table);
  const rows = Array.from({ length: N }, (_, i) => row(i));
  const t0 = performance.now();
  for (let i = 0; i < N; i += 1000)
    await store.results.upsertResults(table, rows.slice(i, i + 1000));
  return N / ((performance.now() - t0) / 1000);
}

const dir = mkdtempSync(join(tmpdir(), 'qtune-bench-sink-'));
const pg =
  !args['no-postgres'] && postgresAvailable() ? await startPostgres({ durable: true }) : undefined;
const systems = [
  {
    name: 'SQLite (WAL, synchronous=NORMAL)',
    open: async (r) => new SqliteStore({ path: join(dir, `store-${r}.db`) }),
  },
];
if (pg) {
  systems.push({
    name: 'PostgreSQL 15 (fsync on)',
    open: async (r) => PostgresStore.open(await pg.createDatabase(`bench_${r}`)),
  });
}

const rows = [];
try {
  for (const sys of systems) {
    for (const [k, shape] of shapes.entries()) {
      keyFor = shape.key;
      const sinkRates = [];
      const runningRates = [];
      const upsertRates = [];
      for (let r = 0; r < ROUNDS; r++) {
        const store = await sys.open(`${sys.name.slice(0, 2).toLowerCase()}${k}_${r}`);
        try {
          const rates = await sinkRound(store, dir, `sink_${r}`);
          sinkRates.push(rates.whole);
          runningRates.push(rates.running);
          upsertRates.push(await upsertRound(store, `upsert_${r}`));
        } finally {
          await store.close();
        }
        console.error(
          `${sys.name}, ${shape.label}, round ${r + 1}: sink ${Math.round(sinkRates.at(-1))}/s (running ${Math.round(runningRates.at(-1))}/s), upsert ${Math.round(upsertRates.at(-1))}/s`,
        );
      }
      rows.push([
        sys.name,
        shape.label,
        fmt(median(sinkRates), 0),
        `${fmt(Math.min(...sinkRates), 0)}–${fmt(Math.max(...sinkRates), 0)}`,
        fmt(median(runningRates), 0),
        `${fmt(Math.min(...runningRates), 0)}–${fmt(Math.max(...runningRates), 0)}`,
        fmt(median(upsertRates), 0),
      ]);
    }
  }
} finally {
  await pg?.stop();
  rmSync(dir, { recursive: true, force: true });
}
printTable(
  `Sink: ${N} results from the embedded broker${args.gateway ? ' through a qtune serve gateway' : ''} into a result table, medians of ${ROUNDS} rounds (results/s, higher is better)`,
  ['store', 'row ids', 'sink results/s', 'range', 'running sink', 'range', 'upsert alone rows/s'],
  rows,
);
