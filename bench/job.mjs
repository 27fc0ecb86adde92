// A whole batch job under fire: N items (default 100,000) submitted with `qtune job submit`,
// 4 worker processes (2 on the embedded broker directly, 2 through `qtune serve`'s HTTP
// gateway), `qtune sink` storing results, and one worker killed with SIGKILL every few seconds
// (then started again). At the end the result table must hold exactly one row per item.
// Needs `npm run build` first. Usage: node bench/job.mjs [--items N] [--kill-every SECONDS]
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { EmbeddedBroker } from '../dist/broker/embedded/index.js';
import { resultQueueOf } from '../dist/patterns/work-queue.js';
import { SqliteStore } from '../dist/store/sqlite/index.js';
import { freePort } from '../test/support/rabbitmq.mjs';
import { benchOptions } from './lib.mjs';

const args = benchOptions(import.meta.url, {
  items: { type: 'string', default: '100000' },
  'kill-every': { type: 'string', default: '3' },
});
const N = Number(args.items);
const KILL_EVERY_MS = Number(args['kill-every']) * 1000;
const CLI = resolve(import.meta.dirname, '../dist/cli/main.js');
const dir = mkdtempSync(join(tmpdir(), 'qtune-bench-job-'));
const brokerUrl = join(dir, 'broker.db');
const storeUrl = join(dir, 'store.db');
const token = 'bench-worker-token-0123456789';
const env = {
  ...process.env,
  QTUNE_BROKER: brokerUrl,
  QTUNE_STORE: storeUrl,
  QTUNE_LOG_LEVEL: 'warn',
  QTUNE_TOKENS: `bench:admin:${token}`,
};
const children = new Set();

function start(args, label) {
  const child = spawn(process.execPath, [CLI, ...args], {
    env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.label = label;
  let err = '';
  child.stderr.on('data', (b) => (err = (err + b).slice(-2000)));
  child.on('exit', (code, signal) => {
    children.delete(child);
    if (code && code !== 0 && !child.expectedExit)
      console.error(`${label} exited ${code} ${signal ?? ''}: ${err}`);
  });
  children.add(child);
  return child;
}

function run(args) {
  return new Promise((res, rej) => {
    const c = spawn(process.execPath, [CLI, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    c.stdout.on('data', (b) => (out += b));
    c.on('exit', (code) =>
      code === 0 ? res(out) : rej(new Error(`qtune ${args.join(' ')} exited ${code}`)),
    );
  });
}

const handler = join(dir, 'describe.mjs');
writeFileSync(
  handler,
  `export default async (item) => ({ name: item.name, words: item.name.split('-').length });\n`,
);
const input = join(dir, 'items.jsonl');
writeFileSync(
  input,
  Array.from({ length: N }, (_, i) => JSON.stringify({ name: `company-${i}`, country: 'NL' })).join(
    '\n',
  ) + '\n',
);

const t0 = Date.now();
let kills = 0;
try {
  console.log(
    await run(['job', 'submit', 'companies', '--input', input, '--key', 'name', '--lease', '5s']),
  );
  const submitS = (Date.now() - t0) / 1000;
  const port = await freePort();
  start(['serve', '--port', String(port)], 'gateway');
  const gateway = `http://127.0.0.1:${port}`;
  await new Promise((r) => setTimeout(r, 1500));
  const workerArgs = (i) =>
    i < 2
      ? ['worker', 'companies', '--module', handler, '--concurrency', '8']
      : [
          'worker',
          'companies',
          '--module',
          handler,
          '--concurrency',
          '8',
          '--gateway',
          gateway,
          '--token',
          token,
        ];
  const gatewayPids = new Set();
  const startWorker = (i) => {
    const w = start(workerArgs(i), `worker ${i}`);
    if (i >= 2) gatewayPids.add(w.pid);
    return w;
  };
  const workers = [0, 1, 2, 3].map(startWorker);
  start(['sink', 'companies', '--follow'], 'sink');

  const store = new SqliteStore({ path: storeUrl });
  const broker = await EmbeddedBroker.open({ path: brokerUrl });
  const t1 = Date.now();
  let lastKill = Date.now();
  let victim = 0;
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    const rows = (await store.results.hasResultTable('companies'))
      ? (await store.results.resultCounts('companies')).total
      : 0;
    if (rows >= N) break;
    if (Date.now() - lastKill >= KILL_EVERY_MS) {
      const w = workers[victim];
      w.expectedExit = true;
      w.kill('SIGKILL');
      kills++;
      workers[victim] = startWorker(victim);
      victim = (victim + 1) % workers.length;
      lastKill = Date.now();
      const q = await broker.stats('companies');
      console.log(
        `${((Date.now() - t1) / 1000).toFixed(0)}s rows ${rows} queued ${q.ready + q.delayed} in flight ${q.inFlight} kills ${kills}`,
      );
    }
    if (Date.now() - t1 > 20 * 60_000) throw new Error('job did not finish in 20 minutes');
  }
  const runS = (Date.now() - t1) / 1000;
  // Let late duplicates (tasks whose worker died after publishing the result) land too.
  await new Promise((r) => setTimeout(r, 3000));
  const counts = await store.results.resultCounts('companies');
  const ids = new Set();
  let writes = 0;
  let afterId;
  for (;;) {
    const page = await store.results.listResults('companies', {
      limit: 10_000,
      ...(afterId && { afterId }),
    });
    if (page.length === 0) break;
    for (const r of page) {
      ids.add(r.id);
      writes += r.writes;
    }
    afterId = page.at(-1).id;
  }
  const items = await store.jobs.listJobItems('companies', { limit: N + 1 });
  const missing = items.filter((i) => !ids.has(i.id)).length;
  const byWorker = await store.results.workerStats('companies');
  const q = await broker.stats('companies');
  const rq = await broker.stats(resultQueueOf('companies'));
  await store.close();
  await broker.close();
  console.log(
    JSON.stringify({
      items: N,
      rows: counts.total,
      distinctIds: ids.size,
      missing,
      duplicateRows: counts.total - ids.size,
      failedRows: counts.failed,
      resultsWrittenMoreThanOnce: writes - ids.size,
      kills,
      workerProcesses: byWorker.length,
      rowsByGatewayWorkers: byWorker
        .filter((w) => gatewayPids.has(w.pid))
        .reduce((n, w) => n + w.ok + w.failed, 0),
      deadLettered: q.deadLettered,
      resultsLeftInQueue: rq.ready + rq.inFlight,
      submitSeconds: submitS,
      runSeconds: runS,
      itemsPerSecond: Math.round(N / runS),
    }),
  );
} finally {
  for (const c of children) {
    c.expectedExit = true;
    c.kill('SIGTERM');
  }
  await new Promise((r) => setTimeout(r, 1000));
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
