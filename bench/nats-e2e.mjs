#!/usr/bin/env node
// End-to-end benchmark driver on NATS JetStream: qtune's nats broker next to the raw JetStream
// ceiling (bench/nats-raw.mjs), measured in the same run on one nats-server. Builds nothing:
// run `npm run build` first.
//
//   node bench/nats-e2e.mjs [--rounds 3] [--tasks 20000] [--workers 2] [--run-timeout 300]
//
// It starts ONE throwaway nats-server (JetStream, file storage) with test/support/nats.mjs
// (stopped and removed on exit), then per round, in turn:
// - "qtune bench": `qtune bench --broker nats://...` (N no-op tasks, W worker processes, the
//   publisher and the result reader in one process; first publish to last result read);
// - "cli": the user's path as real processes: W `qtune worker Q --module noop.mjs
//   --concurrency 50 --prefetch 500` (as `qtune bench` runs them), one
//   `qtune results Q --follow` piped into this script, then `qtune publish Q --file` of N
//   tasks (from the publish command's start to the last result line);
// - "raw": bench/nats-raw.mjs, the official client publishing N messages with JetStream acks
//   and consuming them with one pull consumer; its task ceiling is
//   1 / (2 × (1/publish + 1/consume)), as for RabbitMQ (bench/amqp-raw.mjs).
// Prints medians, each qtune row's median over the raw ceiling's median ("vs raw") and the
// median over rounds of its ratio to the raw ceiling of the same round ("same round"), and writes
// bench/results/latest-nats-e2e.json.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { benchOptions, fmt, median, printTable, ratio, runJson, tail } from './lib.mjs';
import { natsAvailable, startNats } from '../test/support/nats.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const RESULTS_FILE = path.join(BENCH_DIR, 'results', 'latest-nats-e2e.json');
const now = () => performance.timeOrigin + performance.now();

const args = benchOptions(import.meta.url, {
  rounds: { type: 'string', default: '3' },
  tasks: { type: 'string', default: '20000' },
  workers: { type: 'string', default: '2' },
  'run-timeout': { type: 'string', default: '300' },
});
const positive = (name) => {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v <= 0) {
    console.error(`--${name} needs a positive integer, got '${args[name]}' (try --help)`);
    process.exit(2);
  }
  return v;
};
const opts = {
  rounds: positive('rounds'),
  tasks: positive('tasks'),
  workers: positive('workers'),
  runTimeoutS: positive('run-timeout'),
};
if (!natsAvailable()) {
  console.error('nats-e2e: nats-server is not installed (apt-get install -y nats-server)');
  process.exit(2);
}
const { openBroker } = await import('../dist/broker/open.js');

let server;
process.on('SIGINT', () => void server?.stop().finally(() => process.exit(130)));

/** Starts a qtune CLI process; `exited` resolves with its code and when it ended. */
function qtune(cliArgs, place, stdout = 'ignore') {
  const child = spawn(process.execPath, [CLI, ...cliArgs, '--broker', place.url], {
    cwd: place.dir,
    stdio: ['ignore', stdout, 'pipe'],
  });
  child.stderrText = '';
  child.stderr.on('data', (b) => (child.stderrText += b));
  child.exited = new Promise((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, at: now() })),
  );
  return child;
}

/** Resolves when `child` has printed `n` lines, with the time of that line. */
function linesUntil(child, n) {
  let lines = 0;
  return new Promise((resolve) => {
    child.stdout.on('data', (chunk) => {
      for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) lines++;
      if (lines >= n) resolve(now());
    });
  });
}

async function waitForConsumers(broker, queue, count) {
  const until = Date.now() + 60_000;
  while (
    (await broker.stats(queue).then(
      (s) => s.consumers,
      () => 0,
    )) < count
  ) {
    if (Date.now() > until) throw new Error(`queue "${queue}": ${count} consumer(s) never came`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function cliRun(url) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qtune-bench-nats-'));
  const place = { dir, url };
  const queue = `tour-${randomUUID().slice(0, 8)}`;
  const file = path.join(dir, 'tasks.jsonl');
  const lines = [];
  for (let i = 0; i < opts.tasks; i++) lines.push(`{"id":"item-${i}","prompt":"no-op"}`);
  writeFileSync(file, `${lines.join('\n')}\n`);
  const handler = path.join(dir, 'noop.mjs');
  writeFileSync(handler, 'export default async () => ({ ok: true });\n');
  const started = [];
  const admin = await openBroker(url);
  try {
    await admin.declareQueue(queue);
    await admin.declareQueue(`${queue}.results`);
    for (let i = 0; i < opts.workers; i++) {
      started.push(
        qtune(
          ['worker', queue, '--module', handler, '--concurrency', '50', '--prefetch', '500'],
          place,
        ),
      );
    }
    const reader = qtune(['results', queue, '--follow'], place, 'pipe');
    started.push(reader);
    const done = linesUntil(reader, opts.tasks);
    await waitForConsumers(admin, queue, opts.workers);
    await waitForConsumers(admin, `${queue}.results`, 1);
    const t0 = now();
    const publish = qtune(['publish', queue, '--file', file, '--key-field', 'id'], place);
    const timeout = new Promise((_, reject) =>
      setTimeout(() => reject(new Error('cli run: no end')), opts.runTimeoutS * 1000).unref(),
    );
    const failed = publish.exited.then((e) =>
      e.code === 0
        ? new Promise(() => {})
        : Promise.reject(new Error(`publish: exit ${e.code}\n${tail(publish.stderrText)}`)),
    );
    const last = await Promise.race([done, failed, timeout]);
    const seconds = (last - t0) / 1000;
    return { system: 'cli', tasksPerSec: opts.tasks / seconds, seconds };
  } finally {
    for (const c of started) c.kill('SIGTERM');
    await Promise.all(started.map((c) => c.exited));
    for (const q of [queue, `${queue}.results`, `${queue}.dead`]) {
      await admin.deleteQueue(q).catch(() => undefined);
    }
    await admin.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main() {
  const cpus = os.cpus();
  const machine = `${cpus[0]?.model?.trim()}, ${os.availableParallelism?.() ?? cpus.length} cores, node ${process.version}`;
  console.log(
    `qtune nats e2e benchmark: ${opts.tasks} no-op tasks, ${opts.workers} worker processes, ${opts.rounds} rounds`,
  );
  server = await startNats();
  const url = server.url;
  const rounds = [];
  try {
    for (let round = 1; round <= opts.rounds; round++) {
      const row = {};
      const bench = await runJson(
        'qtune bench',
        process.execPath,
        [
          CLI,
          'bench',
          '--broker',
          url,
          '--tasks',
          String(opts.tasks),
          '--workers',
          String(opts.workers),
          '--json',
        ],
        { cwd: ROOT, timeoutS: opts.runTimeoutS },
      );
      row.bench = bench.json?.tasksPerSec ?? null;
      if (bench.error) console.error(`${bench.error}\n${tail(bench.stderr ?? '')}`);
      try {
        row.cli = (await cliRun(url)).tasksPerSec;
      } catch (err) {
        console.error(`cli: ${err.message}`);
        row.cli = null;
      }
      const raw = await runJson(
        'nats-raw',
        process.execPath,
        [
          path.join(BENCH_DIR, 'nats-raw.mjs'),
          '--url',
          url,
          '--tasks',
          String(opts.tasks),
          '--json',
        ],
        { cwd: ROOT, timeoutS: opts.runTimeoutS },
      );
      if (raw.error) console.error(`${raw.error}\n${tail(raw.stderr ?? '')}`);
      row.raw = raw.json?.tasksPerSec ?? null;
      row.rawPublish = raw.json?.publishPerSec ?? null;
      row.rawConsume = raw.json?.consumePerSec ?? null;
      row.server = raw.json?.server;
      rounds.push(row);
      console.error(
        `round ${round}: qtune bench ${fmt(row.bench, 0)}/s, cli ${fmt(row.cli, 0)}/s, raw ceiling ${fmt(row.raw, 0)}/s ` +
          `(publish ${fmt(row.rawPublish, 0)}/s, consume ${fmt(row.rawConsume, 0)}/s)`,
      );
    }
  } finally {
    await server.stop();
    server = undefined;
  }
  const m = (k) => median(rounds.map((r) => r[k]));
  const raw = m('raw');
  console.log(`machine: ${machine}, nats-server ${rounds[0]?.server ?? '?'}`);
  printTable(
    `median of ${opts.rounds} rounds, tasks/s (raw: JetStream publish+consume ceiling, same run)`,
    ['system', 'tasks/s', 'min', 'max', 'vs raw', 'same round'],
    [
      ['qtune bench', 'bench'],
      ['qtune cli processes', 'cli'],
      ['raw JetStream ceiling', 'raw'],
    ].map(([label, k]) => {
      const v = rounds.map((r) => r[k]).filter((x) => typeof x === 'number');
      return [
        label,
        fmt(m(k), 0),
        fmt(v.length ? Math.min(...v) : null, 0),
        fmt(v.length ? Math.max(...v) : null, 0),
        `${fmt((ratio(m(k), raw) ?? 0) * 100, 0)} %`,
        `${fmt((median(rounds.map((r) => ratio(r[k], r.raw))) ?? 0) * 100, 0)} %`,
      ];
    }),
  );
  console.log(
    `raw publish ${fmt(m('rawPublish'), 0)}/s, raw consume ${fmt(m('rawConsume'), 0)}/s (medians)`,
  );
  mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
  writeFileSync(
    RESULTS_FILE,
    `${JSON.stringify({ at: new Date().toISOString(), machine, opts, rounds }, null, 2)}\n`,
  );
}

main().catch((err) => {
  console.error(`nats-e2e: ${err.stack ?? err}`);
  void server?.stop();
  process.exit(1);
});
