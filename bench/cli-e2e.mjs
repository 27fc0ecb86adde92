#!/usr/bin/env node
// The CLI path next to the library: README's tour as real `qtune` processes, measured in the
// same run as the in-process benchmark (`qtune bench`) and BullMQ. Builds nothing: run
// `npm run build` first; BullMQ needs `npm ci --prefix bench/peers` and redis-server, RabbitMQ
// the rabbitmq-server package (see bench/README.md).
//
//   node bench/cli-e2e.mjs [--rounds 3] [--tasks 20000] [--workers 2] [--concurrency 50]
//                          [--prefetch 500] [--brokers embedded,amqp] [--drain-results 20000]
//                          [--no-peers] [--no-drain] [--port 6390] [--run-timeout 300]
//
// Per broker and round, "cli" starts W `qtune worker Q --module noop.mjs` processes and
// `qtune results Q --follow` with its stdout piped into this script, waits until they consume,
// then runs `qtune publish Q --file tasks.jsonl --key-field id` of N tasks: tasks/s from the
// publish command's start to the last result line read. "in-process" is `qtune bench` with
// the same workers, concurrency and prefetch (publisher and result reader in one process);
// "bullmq" is bench/peers/bullmq-e2e.mjs on a throwaway redis-server (embedded rounds only).
// "drain" puts M results in a result queue, then times `qtune results Q` into a pipe: from the
// command's start (with start-up) and from its first line (streaming) to its last line.
// The embedded broker gets a fresh temporary directory per run (the processes run there, on
// the default ./.qtune/broker.db); RabbitMQ is one throwaway node for the whole run
// (QTUNE_BROKER set for every process). Prints medians and writes
// bench/results/latest-cli-e2e.json.
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import {
  benchOptions,
  fmt,
  median,
  printTable,
  ratio,
  runJson,
  runningChild,
  tail,
} from './lib.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const BULLMQ_SCRIPT = path.join(BENCH_DIR, 'peers', 'bullmq-e2e.mjs');
const REDIS_SH = path.join(BENCH_DIR, 'redis.sh');
const RESULTS_FILE = path.join(BENCH_DIR, 'results', 'latest-cli-e2e.json');
const BROKERS = ['embedded', 'amqp'];

const args = benchOptions(import.meta.url, {
  rounds: { type: 'string', default: '3' },
  tasks: { type: 'string', default: '20000' },
  workers: { type: 'string', default: '2' },
  concurrency: { type: 'string', default: '50' },
  prefetch: { type: 'string', default: '500' },
  brokers: { type: 'string', default: BROKERS.join(',') },
  'drain-results': { type: 'string', default: '20000' },
  'no-peers': { type: 'boolean', default: false },
  'no-drain': { type: 'boolean', default: false },
  port: { type: 'string', default: '6390' },
  'run-timeout': { type: 'string', default: '300' },
});

function positiveInt(name) {
  const value = Number(args[name]);
  if (!Number.isInteger(value) || value <= 0) {
    console.error(`--${name} needs a positive integer, got '${args[name]}' (try --help)`);
    process.exit(2);
  }
  return value;
}
const opts = {
  rounds: positiveInt('rounds'),
  tasks: positiveInt('tasks'),
  workers: positiveInt('workers'),
  concurrency: positiveInt('concurrency'),
  prefetch: positiveInt('prefetch'),
  drainResults: positiveInt('drain-results'),
  port: positiveInt('port'),
  runTimeoutS: positiveInt('run-timeout'),
  peers: !args['no-peers'],
  drain: !args['no-drain'],
  brokers: args.brokers.split(',').map((b) => b.trim()),
};
for (const b of opts.brokers) {
  if (!BROKERS.includes(b)) {
    console.error(`--brokers takes embedded and/or amqp, got '${b}' (try --help)`);
    process.exit(2);
  }
}
if (!existsSync(CLI)) {
  console.error(`cli-e2e: ${path.relative(ROOT, CLI)} is missing (run npm run build)`);
  process.exit(2);
}

const { openBroker } = await import('../dist/broker/open.js');
const { resultMessage, resultQueueOf } = await import('../dist/patterns/work-queue.js');
const rabbitSupport = await import('../test/support/rabbitmq.mjs');

const now = () => performance.timeOrigin + performance.now();

// ---------------------------------------------------------------- machine info
function machineInfo() {
  const cpus = os.cpus();
  let osName = `${os.type()} ${os.release()}`;
  try {
    const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'));
    if (pretty) osName = `${pretty[1]} (${os.type()} ${os.release()})`;
  } catch {
    // not Linux, keep os.type()
  }
  const redis = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  const rabbit = spawnSync('dpkg-query', ['-W', '-f=${Version}', 'rabbitmq-server'], {
    encoding: 'utf8',
  });
  return {
    cpuModel: cpus[0]?.model?.trim() ?? 'unknown',
    cores: os.availableParallelism?.() ?? cpus.length,
    ramGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    os: osName,
    arch: os.arch(),
    redis: /v=(\S+)/.exec(redis.stdout ?? '')?.[1] ?? 'not installed',
    rabbitmq: rabbit.status === 0 ? rabbit.stdout.trim() : 'not installed',
  };
}

// ---------------------------------------------------------------- servers
let redisDir;
let rabbit;
const children = new Set(); // CLI processes of the run in progress

function stopRedis() {
  if (redisDir === undefined) return;
  const dir = redisDir;
  redisDir = undefined;
  spawnSync('bash', [REDIS_SH, 'stop', dir], { stdio: ['ignore', 'ignore', 'inherit'] });
  rmSync(dir, { recursive: true, force: true });
}

function startRedis(port) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qtune-bench-redis-'));
  const result = spawnSync('bash', [REDIS_SH, 'start', String(port), dir], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  if (result.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`bench/redis.sh start ${port} failed (exit ${result.status})`);
  }
  redisDir = dir;
}

function killAll() {
  for (const c of children) c.kill('SIGKILL');
  runningChild()?.kill('SIGKILL');
  stopRedis();
  rabbit?.kill();
  rabbit = undefined;
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

// ---------------------------------------------------------------- CLI processes
/** Starts `qtune ARGS` in `cwd`; stderr is kept for error messages. */
function qtune(cliArgs, { cwd, env, stdout = 'ignore' }) {
  const child = spawn(process.execPath, [CLI, ...cliArgs], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', stdout, 'pipe'],
  });
  children.add(child);
  child.stderrText = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s) => (child.stderrText = (child.stderrText + s).slice(-20_000)));
  child.exited = new Promise((resolve) =>
    child.on('close', (code, signal) => {
      children.delete(child);
      resolve({ code, signal, at: now() });
    }),
  );
  return child;
}

async function stopAll(list) {
  for (const c of list) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  const killer = setTimeout(() => list.forEach((c) => c.kill('SIGKILL')), 15_000);
  const exits = await Promise.all(list.map((c) => c.exited));
  clearTimeout(killer);
  return exits;
}

/**
 * Counts the lines a child writes on stdout; `until(n)` resolves with the time the n-th line
 * arrived. The chunks are kept to check the lines afterwards.
 */
function lineCounter(child) {
  let lines = 0;
  let firstAt;
  const chunks = [];
  const waiters = [];
  child.stdout.on('data', (chunk) => {
    chunks.push(chunk);
    let n = 0;
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) n++;
    if (n === 0) return;
    const t = now();
    if (lines === 0) firstAt = t;
    lines += n;
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (lines >= waiters[i].n) {
        waiters[i].resolve(t);
        waiters.splice(i, 1);
      }
    }
  });
  return {
    get lines() {
      return lines;
    },
    get firstAt() {
      return firstAt;
    },
    text: () => Buffer.concat(chunks).toString('utf8'),
    until: (n) =>
      new Promise((resolve) => {
        if (lines >= n) resolve(now());
        else waiters.push({ n, resolve });
      }),
  };
}

function withTimeout(promise, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${what}: no end after ${opts.runTimeoutS} s`)),
        opts.runTimeoutS * 1000,
      );
    }),
  ]).finally(() => clearTimeout(timer));
}

async function waitForConsumers(broker, queue, count) {
  const until = Date.now() + 60_000;
  for (;;) {
    const consumers = await broker.stats(queue).then(
      (s) => s.consumers,
      () => 0,
    );
    if (consumers >= count) return;
    if (Date.now() > until) throw new Error(`queue "${queue}": ${count} consumer(s) never came`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Where a run's processes run and which broker they use. */
function placeFor(broker) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qtune-bench-cli-'));
  if (broker === 'embedded') {
    return { dir, cwd: dir, env: {}, url: path.join(dir, '.qtune', 'broker.db') };
  }
  return { dir, cwd: dir, env: { QTUNE_BROKER: rabbit.url }, url: rabbit.url };
}

/** README's tour: workers and a following reader first, then publish N tasks from a file. */
async function cliRun(broker) {
  const place = placeFor(broker);
  const queue = `tour-${randomUUID().slice(0, 8)}`;
  const file = path.join(place.dir, 'tasks.jsonl');
  const lines = [];
  for (let i = 0; i < opts.tasks; i++) lines.push(`{"id":"item-${i}","prompt":"no-op"}`);
  writeFileSync(file, `${lines.join('\n')}\n`);
  const handler = path.join(place.dir, 'noop.mjs');
  writeFileSync(handler, 'export default async () => ({ ok: true });\n');

  const admin = await openBroker(place.url);
  const started = [];
  try {
    // The reader needs its queue to exist; publish would create it, but it comes last.
    await admin.declareQueue(resultQueueOf(queue));
    for (let i = 0; i < opts.workers; i++) {
      started.push(
        qtune(
          [
            'worker',
            queue,
            '--module',
            handler,
            '--concurrency',
            String(opts.concurrency),
            '--prefetch',
            String(opts.prefetch),
          ],
          place,
        ),
      );
    }
    const reader = qtune(['results', queue, '--follow'], { ...place, stdout: 'pipe' });
    started.push(reader);
    const read = lineCounter(reader);
    await waitForConsumers(admin, queue, opts.workers);
    await waitForConsumers(admin, resultQueueOf(queue), 1);
    await admin.close();

    const t0 = now();
    const publish = qtune(['publish', queue, '--file', file, '--key-field', 'id'], place);
    const failed = publish.exited.then((e) => {
      if (e.code !== 0)
        throw new Error(`publish: exit ${e.code ?? e.signal}\n${tail(publish.stderrText)}`);
      return new Promise(() => {});
    });
    const last = await withTimeout(Promise.race([read.until(opts.tasks), failed]), 'cli run');
    const published = await publish.exited;
    const exits = await stopAll(started);
    const bad = exits.findIndex((e) => e.code !== 0);
    if (bad !== -1) {
      throw new Error(
        `a CLI process exited ${exits[bad].code ?? exits[bad].signal}: ${tail(started[bad].stderrText)}`,
      );
    }
    const ids = new Set();
    for (const line of read.text().split('\n')) {
      if (line === '') continue;
      const r = JSON.parse(line);
      if (r.ok !== true) throw new Error(`a result is not ok: ${line}`);
      ids.add(r.key);
    }
    if (ids.size !== opts.tasks)
      throw new Error(`${ids.size} distinct keys, expected ${opts.tasks}`);
    const warnings = started.flatMap((c) => warningsIn(c.stderrText));
    const seconds = (last - t0) / 1000;
    return {
      tasksPerSec: opts.tasks / seconds,
      seconds,
      publishSeconds: (published.at - t0) / 1000,
      warnings,
    };
  } finally {
    await stopAll(started);
    if (broker === 'amqp') await deleteQueues(place.url, [queue, resultQueueOf(queue)]);
    rmSync(place.dir, { recursive: true, force: true });
  }
}

/** Node's process warnings in a child's stderr, each once. */
function warningsIn(stderr) {
  return [...new Set(stderr.match(/\w*Warning: [^\n]*/g) ?? [])];
}

async function deleteQueues(url, queues) {
  const admin = await openBroker(url);
  try {
    for (const q of [...queues, ...queues.map((x) => `${x}.dead`)]) {
      await admin.deleteQueue(q).catch(() => undefined);
    }
  } finally {
    await admin.close();
  }
}

/** `qtune bench`: the same load with the publisher and the reader in one process. */
async function inProcessRun(broker) {
  const result = await runJson(
    'qtune bench',
    process.execPath,
    [
      CLI,
      'bench',
      ...(broker === 'amqp' ? ['--broker', rabbit.url] : []),
      '--tasks',
      String(opts.tasks),
      '--workers',
      String(opts.workers),
      '--concurrency',
      String(opts.concurrency),
      '--prefetch',
      String(opts.prefetch),
      '--json',
    ],
    { cwd: ROOT, timeoutS: opts.runTimeoutS },
  );
  if (result.json === undefined) throw new Error(`${result.error}\n${tail(result.stderr ?? '')}`);
  return { tasksPerSec: result.json.tasksPerSec, seconds: result.json.seconds };
}

async function bullmqRun() {
  const result = await runJson(
    'bullmq',
    process.execPath,
    [BULLMQ_SCRIPT, '--tasks', String(opts.tasks), '--workers', String(opts.workers)],
    { cwd: ROOT, env: { REDIS_URL: `redis://127.0.0.1:${opts.port}` }, timeoutS: opts.runTimeoutS },
  );
  if (result.json === undefined) throw new Error(`${result.error}\n${tail(result.stderr ?? '')}`);
  return {
    tasksPerSec: result.json.tasksPerSec,
    seconds: result.json.seconds,
    version: result.json.version,
  };
}

/** A result as a no-op worker hands it in. */
function sampleResult(i) {
  const t = Date.now();
  return {
    taskId: randomUUID(),
    key: `item-${i}`,
    ok: true,
    value: { ok: true },
    worker: { host: os.hostname(), pid: 4242, id: 'w1', gpus: [] },
    startedAt: t,
    finishedAt: t,
    durationMs: 0.1,
    attempt: 1,
  };
}

/** M results waiting in a result queue, read by `qtune results Q` into a pipe. */
async function drainRun(broker) {
  const place = placeFor(broker);
  const queue = `drain-${randomUUID().slice(0, 8)}`;
  const m = opts.drainResults;
  const admin = await openBroker(place.url);
  try {
    await admin.declareQueue(resultQueueOf(queue));
    for (let i = 0; i < m; i += 1000) {
      const batch = [];
      for (let j = i; j < Math.min(m, i + 1000); j++) batch.push(resultMessage(sampleResult(j)));
      await admin.publish(resultQueueOf(queue), batch);
    }
  } finally {
    await admin.close();
  }
  try {
    const t0 = now();
    const reader = qtune(['results', queue], { ...place, stdout: 'pipe' });
    const read = lineCounter(reader);
    const last = await withTimeout(
      Promise.race([
        read.until(m),
        reader.exited.then((e) => {
          throw new Error(
            `results: exit ${e.code ?? e.signal} after ${read.lines} lines\n${tail(reader.stderrText)}`,
          );
        }),
      ]),
      'drain',
    );
    const exit = await reader.exited;
    if (exit.code !== 0) throw new Error(`results: exit ${exit.code ?? exit.signal}`);
    return {
      withStartup: m / ((last - t0) / 1000),
      streaming: (m - 1) / ((last - read.firstAt) / 1000),
      startupMs: read.firstAt - t0,
      exitSeconds: (exit.at - t0) / 1000,
      warnings: warningsIn(reader.stderrText),
    };
  } finally {
    if (broker === 'amqp') await deleteQueues(place.url, [queue]);
    rmSync(place.dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- main
const round = (x, d = 0) =>
  x === null || x === undefined ? null : Math.round(x * 10 ** d) / 10 ** d;

async function main() {
  const machine = machineInfo();
  console.log(
    `qtune CLI e2e benchmark: ${opts.tasks} no-op tasks, ${opts.workers} worker processes × ${opts.concurrency} (prefetch ${opts.prefetch}), ${opts.rounds} rounds`,
  );
  console.log(
    `machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.ramGiB} GiB RAM, node ${machine.node}, ${machine.os}, redis ${machine.redis}, rabbitmq ${machine.rabbitmq}`,
  );
  const unavailable = [];
  let withBullmq = opts.peers && opts.brokers.includes('embedded');
  if (withBullmq && !existsSync(path.join(BENCH_DIR, 'peers', 'node_modules', 'bullmq'))) {
    unavailable.push('bullmq not available: run npm ci --prefix bench/peers');
    withBullmq = false;
  } else if (withBullmq && machine.redis === 'not installed') {
    unavailable.push('bullmq not available: apt-get install -y redis-server');
    withBullmq = false;
  }
  const brokers = opts.brokers.filter((b) => {
    if (b !== 'amqp' || rabbitSupport.rabbitAvailable()) return true;
    unavailable.push('RabbitMQ not available: apt-get install -y rabbitmq-server');
    return false;
  });
  if (withBullmq) startRedis(opts.port);
  if (brokers.includes('amqp')) {
    process.stderr.write('starting RabbitMQ ... ');
    rabbit = await rabbitSupport.startRabbit();
    process.stderr.write(`${rabbit.url}\n`);
  }

  const systems = {
    embedded: ['cli', 'in-process', ...(withBullmq ? ['bullmq'] : [])],
    amqp: ['cli', 'in-process'],
  };
  const runs = {};
  const errors = [];
  const record = async (key, round, label, fn, show) => {
    process.stderr.write(`  ${label} ... `);
    try {
      const r = { round, ...(await fn()) };
      (runs[key] ??= []).push(r);
      process.stderr.write(`${show(r)}\n`);
    } catch (err) {
      process.stderr.write('failed\n');
      errors.push({ run: label, error: err.message });
    }
  };
  const showRate = (r) => `${fmt(r.tasksPerSec, 0)} tasks/s (${fmt(r.seconds, 2)} s)`;
  for (let r = 1; r <= opts.rounds; r++) {
    for (const broker of brokers) {
      // Rotate which system goes first, so none always runs on a warmer machine.
      const list = systems[broker];
      const order = list.map((_, i) => list[(i + r - 1) % list.length]);
      for (const system of order) {
        const label = `round ${r}/${opts.rounds} ${broker} ${system}`;
        const run =
          system === 'cli'
            ? () => cliRun(broker)
            : system === 'in-process'
              ? () => inProcessRun(broker)
              : () => bullmqRun();
        await record(`${broker} ${system}`, r, label, run, showRate);
      }
      if (opts.drain) {
        await record(
          `${broker} drain`,
          r,
          `round ${r}/${opts.rounds} ${broker} results drain`,
          () => drainRun(broker),
          (d) =>
            `${fmt(d.withStartup, 0)} results/s with start-up, ${fmt(d.streaming, 0)} streaming (first line after ${fmt(d.startupMs, 0)} ms)`,
        );
      }
    }
  }
  stopRedis();
  if (rabbit) {
    const node = rabbit;
    rabbit = undefined;
    await node.stop();
  }

  const med = (key, field) => median((runs[key] ?? []).map((x) => x[field]));
  const range = (key, field) => {
    const v = (runs[key] ?? []).map((x) => x[field]);
    return v.length === 0 ? '' : `${fmt(Math.min(...v), 0)}–${fmt(Math.max(...v), 0)}`;
  };
  /** Median over rounds of `key`'s rate over `base`'s in the same round. */
  const pairedRatio = (key, base) =>
    median(
      (runs[key] ?? []).map((x) =>
        ratio(x.tasksPerSec, runs[base]?.find((y) => y.round === x.round)?.tasksPerSec),
      ),
    );
  const summary = {};
  const rows = [];
  for (const broker of brokers) {
    const cli = med(`${broker} cli`, 'tasksPerSec');
    const inproc = med(`${broker} in-process`, 'tasksPerSec');
    const bull = broker === 'embedded' ? med('embedded bullmq', 'tasksPerSec') : null;
    summary[broker] = {
      cli: round(cli),
      inProcess: round(inproc),
      bullmq: round(bull),
      cliPublishSeconds: round(med(`${broker} cli`, 'publishSeconds'), 3),
      cliVsInProcess: round(ratio(cli, inproc), 3),
      cliVsInProcessPerRound: round(pairedRatio(`${broker} cli`, `${broker} in-process`), 3),
      cliVsBullmq: round(ratio(cli, bull), 3),
      inProcessVsBullmq: round(ratio(inproc, bull), 3),
    };
    for (const system of systems[broker]) {
      const key = `${broker} ${system}`;
      const rate = med(key, 'tasksPerSec');
      rows.push([
        key,
        fmt(rate, 0),
        range(key, 'tasksPerSec'),
        system === 'in-process' ? '1.00x' : `${fmt(ratio(rate, inproc), 2)}x`,
        system === 'in-process' ? '1.00x' : `${fmt(pairedRatio(key, `${broker} in-process`), 2)}x`,
        bull === null || system === 'bullmq' ? '' : `${fmt(ratio(rate, bull), 2)}x`,
      ]);
    }
  }
  printTable(
    `End to end: ${opts.tasks} tasks, ${opts.workers} workers × ${opts.concurrency}, medians of ${opts.rounds} rounds (tasks/s, higher is better)`,
    ['system', 'tasks/s', 'range', 'vs in-process', 'same round', 'vs bullmq'],
    rows,
  );
  if (opts.drain) {
    const drainRows = brokers.map((broker) => {
      const key = `${broker} drain`;
      summary[broker].drainWithStartup = round(med(key, 'withStartup'));
      summary[broker].drainStreaming = round(med(key, 'streaming'));
      summary[broker].drainStartupMs = round(med(key, 'startupMs'));
      return [
        `${broker} qtune results`,
        fmt(med(key, 'withStartup'), 0),
        range(key, 'withStartup'),
        fmt(med(key, 'streaming'), 0),
        range(key, 'streaming'),
        fmt(med(key, 'startupMs'), 0),
      ];
    });
    printTable(
      `Draining ${opts.drainResults} waiting results into a pipe, medians of ${opts.rounds} rounds (results/s)`,
      ['reader', 'with start-up', 'range', 'streaming', 'range', 'first line ms'],
      drainRows,
    );
  }
  const warned = Object.entries(runs).flatMap(([key, list]) =>
    list.filter((r) => r.warnings?.length > 0).map((r) => `${key}: ${r.warnings.join('; ')}`),
  );
  console.log(`\nprocess warnings: ${warned.length === 0 ? 'none' : ''}`);
  for (const w of warned) console.log(`  ${w}`);
  for (const why of unavailable) console.log(`\n${why}`);
  for (const e of errors) console.log(`\nerror in ${e.run}: ${e.error}`);

  mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
  writeFileSync(
    RESULTS_FILE,
    `${JSON.stringify(
      {
        generatedAt: new Date().toISOString(),
        machine,
        config: opts,
        summary,
        runs,
        unavailable,
        errors,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`\nraw results: ${path.relative(ROOT, RESULTS_FILE)}`);
  return errors.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`cli-e2e: ${error.stack ?? error.message}`);
    killAll();
    process.exit(1);
  },
);
