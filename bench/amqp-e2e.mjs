#!/usr/bin/env node
// End-to-end benchmark driver on RabbitMQ: qtune's amqp broker next to Celery and next to the
// raw amqplib ceiling, measured in the same run on one RabbitMQ node. Builds nothing: run
// `npm run build` first; Celery comes from Debian (see bench/README.md).
//
//   node bench/amqp-e2e.mjs [--rounds 3] [--tasks 20000] [--workers 2]
//                           [--only qtune|celery|raw] [--python /usr/bin/python3]
//                           [--run-timeout 600]
//
// It starts ONE throwaway RabbitMQ node with test/support/rabbitmq.mjs (stopped and removed on
// exit, also on Ctrl-C), then per round runs qtune's `bench --broker <url>` and Celery
// (alternating which goes first) and the raw ceiling (bench/amqp-raw.mjs). It prints a table
// of medians and writes everything it measured to bench/results/latest-amqp-e2e.json.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { fmt, median, printTable, ratio, runJson, runningChild, tail, usageOf } from './lib.mjs';
import { rabbitAvailable, startRabbit } from '../test/support/rabbitmq.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);
// QTUNE_CLI overrides the qtune entry point (for testing this driver).
const QTUNE_CLI = process.env.QTUNE_CLI ?? path.join(ROOT, 'dist', 'cli', 'main.js');
const CELERY_SCRIPT = path.join(BENCH_DIR, 'peers', 'celery_e2e.py');
const RAW_SCRIPT = path.join(BENCH_DIR, 'amqp-raw.mjs');
const RESULTS_FILE = path.join(BENCH_DIR, 'results', 'latest-amqp-e2e.json');
const SYSTEMS = ['qtune', 'celery', 'raw'];

function parseArgs(argv) {
  const opts = {
    rounds: 3,
    tasks: 20_000,
    workers: 2,
    only: undefined,
    python: '/usr/bin/python3',
    runTimeoutS: 600,
  };
  const numeric = {
    '--rounds': 'rounds',
    '--tasks': 'tasks',
    '--workers': 'workers',
    '--run-timeout': 'runTimeoutS',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg in numeric) {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value <= 0)
        throw new Error(`${arg} needs a positive integer, got '${argv[i] ?? ''}'`);
      opts[numeric[arg]] = value;
    } else if (arg === '--only') {
      opts.only = argv[++i];
      if (!SYSTEMS.includes(opts.only))
        throw new Error(`--only takes qtune, celery or raw, got '${opts.only ?? ''}'`);
    } else if (arg === '--python') {
      opts.python = argv[++i];
      if (!opts.python) throw new Error('--python needs a path');
    } else if (arg === '--help' || arg === '-h') {
      console.log(usageOf(import.meta.url));
      process.exit(0);
    } else throw new Error(`unknown argument '${arg}' (try --help)`);
  }
  return opts;
}

// ---------------------------------------------------------------- machine info
function machineInfo(python) {
  const cpus = os.cpus();
  let osName = `${os.type()} ${os.release()}`;
  try {
    const pretty = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'));
    if (pretty) osName = `${pretty[1]} (${os.type()} ${os.release()})`;
  } catch {
    // not Linux, keep os.type()
  }
  const celery = spawnSync(python, ['-c', 'import celery; print(celery.__version__)'], {
    encoding: 'utf8',
  });
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
    rabbitmq: rabbit.status === 0 ? rabbit.stdout.trim() : 'not installed',
    celery: celery.status === 0 ? celery.stdout.trim() : 'not installed',
  };
}

// ---------------------------------------------------------------- rabbitmq lifecycle
let rabbit;

/** Last resort on 'exit', where nothing can be awaited: kill -9 the node's VM. */
function killRabbit() {
  if (rabbit === undefined) return;
  const node = rabbit;
  rabbit = undefined;
  node.kill();
}

process.on('exit', killRabbit);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    runningChild()?.kill('SIGTERM');
    const node = rabbit;
    rabbit = undefined;
    const done = () => process.exit(130);
    if (node === undefined) done();
    else node.stop().then(done, done);
    setTimeout(() => {
      node?.kill();
      done();
    }, 10_000).unref();
  });
}

// ---------------------------------------------------------------- running one benchmark
/** qtune's amqp broker may not exist yet; tell "not there" apart from "failed". */
function looksUnavailable(result) {
  const text = `${result.stderr ?? ''}\n${result.stdout ?? ''}`;
  return /unknown scheme|unknown (command|option)|cannot find module|ERR_MODULE_NOT_FOUND/i.test(
    text,
  );
}

// ---------------------------------------------------------------- statistics and table

const round3 = (x) => (x === null ? null : Math.round(x * 1000) / 1000);

function summarize(runs) {
  if (runs.length === 0) return null;
  return {
    runs: runs.length,
    version: runs[0].version,
    tasksPerSec: round3(median(runs.map((r) => r.tasksPerSec))),
    tasksPerSecMin: Math.min(...runs.map((r) => r.tasksPerSec)),
    tasksPerSecMax: Math.max(...runs.map((r) => r.tasksPerSec)),
    startP50: round3(median(runs.map((r) => r.startLatencyMs?.p50))),
    e2eP50: round3(median(runs.map((r) => r.e2eLatencyMs?.p50))),
    publishPerSec: round3(median(runs.map((r) => r.publishPerSec))),
    consumePerSec: round3(median(runs.map((r) => r.consumePerSec))),
  };
}

// ---------------------------------------------------------------- main
async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`amqp-e2e: ${error.message}`);
    return 2;
  }
  if (!rabbitAvailable()) {
    console.error(
      'amqp-e2e: rabbitmq-server is not installed (apt-get install -y rabbitmq-server python3-celery python3-pika)',
    );
    return 2;
  }
  const machine = machineInfo(opts.python);
  const wanted = opts.only === undefined ? SYSTEMS : [opts.only];
  const unavailable = {};
  if (wanted.includes('qtune') && !existsSync(QTUNE_CLI))
    unavailable.qtune = `qtune on amqp not available: ${path.relative(ROOT, QTUNE_CLI)} is missing (run npm run build)`;
  if (wanted.includes('celery') && machine.celery === 'not installed')
    unavailable.celery = `celery not available: ${opts.python} cannot import celery (apt-get install -y python3-celery)`;

  console.log(
    `qtune amqp e2e benchmark: ${opts.tasks} no-op tasks, ${opts.workers} worker processes, ${opts.rounds} rounds`,
  );
  console.log(
    `machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.ramGiB} GiB RAM, node ${machine.node}, ${machine.os}, rabbitmq ${machine.rabbitmq}, celery ${machine.celery}`,
  );

  process.stderr.write('starting RabbitMQ ... ');
  rabbit = await startRabbit();
  const url = rabbit.url;
  process.stderr.write(`${url}\n`);

  const commands = {
    qtune: () => [
      'node',
      [
        QTUNE_CLI,
        'bench',
        '--broker',
        url,
        '--tasks',
        String(opts.tasks),
        '--workers',
        String(opts.workers),
        '--json',
      ],
    ],
    celery: () => [
      opts.python,
      [
        CELERY_SCRIPT,
        '--url',
        url,
        '--tasks',
        String(opts.tasks),
        '--workers',
        String(opts.workers),
        '--json',
      ],
    ],
    raw: () => ['node', [RAW_SCRIPT, '--url', url, '--tasks', String(opts.tasks), '--json']],
  };

  const active = () => wanted.filter((s) => unavailable[s] === undefined);
  const runs = { qtune: [], celery: [], raw: [] };
  const errors = [];

  async function runOne(system, label) {
    const [command, args] = commands[system]();
    process.stderr.write(`  ${label} ... `);
    const result = await runJson(system, command, args, { cwd: ROOT, timeoutS: opts.runTimeoutS });
    if (result.json !== undefined) {
      const j = result.json;
      process.stderr.write(
        system === 'raw'
          ? `publish ${fmt(j.publishPerSec, 0)}/s, consume ${fmt(j.consumePerSec, 0)}/s, ceiling ${fmt(j.tasksPerSec, 0)} tasks/s\n`
          : `${fmt(j.tasksPerSec)} tasks/s, start p50 ${fmt(j.startLatencyMs?.p50, 2)} ms, e2e p50 ${fmt(j.e2eLatencyMs?.p50, 2)} ms\n`,
      );
      return j;
    }
    if (system === 'qtune' && looksUnavailable(result)) {
      unavailable.qtune = `qtune on amqp not available: ${tail(result.stderr || result.stdout || '', 2)}`;
      process.stderr.write('qtune on amqp not available\n');
      return undefined;
    }
    process.stderr.write(`failed (${result.error})\n`);
    errors.push({ system, error: result.error, stderr: tail(result.stderr ?? '', 20) });
    return undefined;
  }

  for (let round = 1; round <= opts.rounds; round++) {
    // Alternate which system goes first, so neither always runs on a warmer node.
    const order = round % 2 === 1 ? SYSTEMS : ['celery', 'qtune', 'raw'];
    for (const system of order) {
      if (!active().includes(system)) continue;
      const j = await runOne(system, `round ${round}/${opts.rounds} ${system}`);
      if (j !== undefined) runs[system].push({ round, ...j });
    }
  }
  const node = rabbit;
  rabbit = undefined;
  await node.stop();

  // ---- report
  const sum = {
    qtune: summarize(runs.qtune),
    celery: summarize(runs.celery),
    raw: summarize(runs.raw),
  };
  const ceiling = sum.raw?.tasksPerSec ?? null;
  const rows = [];
  const labels = { qtune: 'qtune (amqp)', celery: 'celery', raw: 'raw amqplib ceiling' };
  for (const system of SYSTEMS) {
    const s = sum[system];
    if (s === null) {
      if (wanted.includes(system))
        rows.push([
          labels[system],
          unavailable[system] ? 'not available' : 'failed',
          '',
          '',
          '',
          '',
        ]);
      continue;
    }
    const pct = system === 'raw' ? null : ratio(s.tasksPerSec, ceiling);
    rows.push([
      `${labels[system]} ${s.version ?? ''}`.trim(),
      fmt(s.tasksPerSec, 0),
      `${fmt(s.tasksPerSecMin, 0)}–${fmt(s.tasksPerSecMax, 0)}`,
      pct === null ? (system === 'raw' ? '100%' : '—') : `${fmt(pct * 100, 0)}%`,
      fmt(s.startP50, 1),
      fmt(s.e2eP50, 1),
    ]);
  }
  const ratios = {
    qtuneOverCelery: round3(ratio(sum.qtune?.tasksPerSec, sum.celery?.tasksPerSec)),
    qtuneOfCeiling: round3(ratio(sum.qtune?.tasksPerSec, ceiling)),
    celeryOfCeiling: round3(ratio(sum.celery?.tasksPerSec, ceiling)),
  };
  if (ratios.qtuneOverCelery !== null)
    rows.push(['qtune/celery', `${fmt(ratios.qtuneOverCelery, 2)}x`, '', '', '', '']);
  printTable(
    `Throughput on one RabbitMQ node: ${opts.tasks} tasks, ${opts.workers} worker processes, medians of ${opts.rounds} rounds (tasks/s higher is better; latencies in ms)`,
    ['system', 'tasks/s', 'range', 'of ceiling', 'start p50', 'e2e p50'],
    rows,
  );
  if (sum.raw)
    console.log(
      `\nceiling = 1 / (2 × (1/publish + 1/consume)) with raw amqplib on a quorum queue: confirmed publishes ${fmt(sum.raw.publishPerSec, 0)}/s, consumed + acked ${fmt(sum.raw.consumePerSec, 0)}/s (medians)`,
    );

  for (const why of Object.values(unavailable)) console.log(`\n${why}`);
  for (const e of errors) console.log(`\nerror: ${e.error}${e.stderr ? `\n${e.stderr}` : ''}`);

  const report = {
    generatedAt: new Date().toISOString(),
    machine,
    config: { rounds: opts.rounds, tasks: opts.tasks, workers: opts.workers, only: opts.only },
    summary: { ...sum, ratios },
    runs,
    unavailable,
    errors,
  };
  mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
  writeFileSync(RESULTS_FILE, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\nraw results: ${path.relative(ROOT, RESULTS_FILE)}`);
  return errors.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  async (error) => {
    console.error(`amqp-e2e: ${error.message}`);
    const node = rabbit;
    rabbit = undefined;
    await node?.stop().catch(() => node.kill());
    process.exit(1);
  },
);
