#!/usr/bin/env node
// End-to-end benchmark driver: qtune next to BullMQ, measured in the same run on
// this machine. Builds nothing: run `npm run build` and `npm ci --prefix bench/peers`
// first (see bench/README.md).
//
//   node bench/e2e.mjs [--rounds 3] [--tasks 20000] [--workers 2] [--port 6390]
//                      [--rate 100] [--rate-tasks 1000] [--no-rate]
//                      [--only qtune|bullmq] [--run-timeout 600]
//
// For each round it runs both systems' throughput benchmark (alternating which goes
// first), then each system's steady-rate latency mode once. It starts a throwaway
// redis-server for BullMQ with bench/redis.sh and stops it on exit. It prints a table
// of medians and writes everything it measured to bench/results/latest-e2e.json.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { fmt, median, printTable, ratio, runJson, runningChild, tail, usageOf } from './lib.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);
// QTUNE_CLI overrides the qtune entry point (for testing this driver).
const QTUNE_CLI = process.env.QTUNE_CLI ?? path.join(ROOT, 'dist', 'cli', 'main.js');
const BULLMQ_SCRIPT = path.join(BENCH_DIR, 'peers', 'bullmq-e2e.mjs');
const REDIS_SH = path.join(BENCH_DIR, 'redis.sh');
const RESULTS_FILE = path.join(BENCH_DIR, 'results', 'latest-e2e.json');
const SYSTEMS = ['qtune', 'bullmq'];

function parseArgs(argv) {
  const opts = {
    rounds: 3,
    tasks: 20_000,
    workers: 2,
    port: 6390,
    rate: 100,
    rateTasks: 1_000,
    withRate: true,
    only: undefined,
    runTimeoutS: 600,
  };
  const numeric = {
    '--rounds': 'rounds',
    '--tasks': 'tasks',
    '--workers': 'workers',
    '--port': 'port',
    '--rate': 'rate',
    '--rate-tasks': 'rateTasks',
    '--run-timeout': 'runTimeoutS',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg in numeric) {
      const value = Number(argv[++i]);
      if (!Number.isFinite(value) || value <= 0)
        throw new Error(`${arg} needs a positive number, got '${argv[i] ?? ''}'`);
      opts[numeric[arg]] = value;
    } else if (arg === '--no-rate') opts.withRate = false;
    else if (arg === '--only') {
      opts.only = argv[++i];
      if (!SYSTEMS.includes(opts.only))
        throw new Error(`--only takes qtune or bullmq, got '${opts.only ?? ''}'`);
    } else if (arg === '--help' || arg === '-h') {
      console.log(usageOf(import.meta.url));
      process.exit(0);
    } else throw new Error(`unknown argument '${arg}' (try --help)`);
  }
  return opts;
}

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
  return {
    cpuModel: cpus[0]?.model?.trim() ?? 'unknown',
    cores: os.availableParallelism?.() ?? cpus.length,
    ramGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    os: osName,
    arch: os.arch(),
    redis: /v=(\S+)/.exec(redis.stdout ?? '')?.[1] ?? 'not installed',
  };
}

// ---------------------------------------------------------------- redis lifecycle
let redisDir;
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

process.on('exit', stopRedis);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    runningChild()?.kill('SIGTERM');
    stopRedis();
    process.exit(130);
  });
}

// ---------------------------------------------------------------- running one benchmark
/** qtune's bench command may not exist yet; tell "not there" apart from "failed". */
function looksUnavailable(result) {
  const text = `${result.stderr ?? ''}\n${result.stdout ?? ''}`;
  return /unknown (command|option)|cannot find module|ERR_MODULE_NOT_FOUND|too many arguments/i.test(
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
    startP99: round3(median(runs.map((r) => r.startLatencyMs?.p99))),
    e2eP50: round3(median(runs.map((r) => r.e2eLatencyMs?.p50))),
    e2eP99: round3(median(runs.map((r) => r.e2eLatencyMs?.p99))),
  };
}

// ---------------------------------------------------------------- main
async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`e2e: ${error.message}`);
    return 2;
  }
  const machine = machineInfo();
  const redisUrl = `redis://127.0.0.1:${opts.port}`;
  const wanted = opts.only === undefined ? SYSTEMS : [opts.only];

  const unavailable = {};
  if (wanted.includes('qtune') && !existsSync(QTUNE_CLI))
    unavailable.qtune = `qtune bench not available: ${path.relative(ROOT, QTUNE_CLI)} is missing (run npm run build)`;
  if (wanted.includes('bullmq')) {
    if (!existsSync(path.join(BENCH_DIR, 'peers', 'node_modules', 'bullmq')))
      unavailable.bullmq =
        'bullmq bench not available: bench/peers has no node_modules (run npm ci --prefix bench/peers)';
    else if (machine.redis === 'not installed')
      unavailable.bullmq =
        'bullmq bench not available: redis-server is not installed (apt-get install -y redis-server)';
  }

  const commands = {
    qtune: (mode) => [
      'node',
      [
        QTUNE_CLI,
        'bench',
        ...(mode === 'rate'
          ? ['--rate', String(opts.rate), '--tasks', String(opts.rateTasks)]
          : ['--tasks', String(opts.tasks)]),
        '--workers',
        String(opts.workers),
        '--json',
      ],
    ],
    bullmq: (mode) => [
      'node',
      [
        BULLMQ_SCRIPT,
        ...(mode === 'rate'
          ? ['--rate', String(opts.rate), '--tasks', String(opts.rateTasks)]
          : ['--tasks', String(opts.tasks)]),
        '--workers',
        String(opts.workers),
      ],
    ],
  };

  console.log(
    `qtune e2e benchmark: ${opts.tasks} no-op tasks, ${opts.workers} worker processes, ${opts.rounds} rounds`,
  );
  console.log(
    `machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.ramGiB} GiB RAM, node ${machine.node}, ${machine.os}, redis ${machine.redis}`,
  );

  const active = () => wanted.filter((s) => unavailable[s] === undefined);
  if (active().includes('bullmq')) startRedis(opts.port);

  const runs = { qtune: [], bullmq: [] };
  const rateRuns = {};
  const errors = [];

  async function runOne(system, mode, label) {
    const [command, args] = commands[system](mode);
    const timeoutS = opts.runTimeoutS;
    process.stderr.write(`  ${label} ... `);
    const result = await runJson(`${system} ${mode}`, command, args, {
      cwd: ROOT,
      env: { REDIS_URL: redisUrl },
      timeoutS,
    });
    if (result.json !== undefined) {
      const j = result.json;
      process.stderr.write(
        `${fmt(j.tasksPerSec)} tasks/s, start p50 ${fmt(j.startLatencyMs?.p50, 2)} ms, e2e p50 ${fmt(j.e2eLatencyMs?.p50, 2)} ms\n`,
      );
      return j;
    }
    if (system === 'qtune' && looksUnavailable(result)) {
      unavailable.qtune = `qtune bench${mode === 'rate' ? ' --rate' : ''} not available: ${tail(result.stderr || result.stdout || '', 2)}`;
      process.stderr.write('qtune bench not available\n');
      return undefined;
    }
    process.stderr.write(`failed (${result.error})\n`);
    errors.push({ system, mode, error: result.error, stderr: tail(result.stderr ?? '', 20) });
    return undefined;
  }

  for (let round = 1; round <= opts.rounds; round++) {
    // Alternate which system goes first, so neither always runs on a warmer machine.
    const order = round % 2 === 1 ? SYSTEMS : [...SYSTEMS].reverse();
    for (const system of order) {
      if (!active().includes(system)) continue;
      const j = await runOne(system, 'throughput', `round ${round}/${opts.rounds} ${system}`);
      if (j !== undefined) runs[system].push({ round, ...j });
    }
  }
  if (opts.withRate) {
    for (const system of SYSTEMS) {
      if (!active().includes(system)) continue;
      const j = await runOne(system, 'rate', `rate ${opts.rate}/s ${system}`);
      if (j !== undefined) rateRuns[system] = j;
    }
  }
  stopRedis();

  // ---- report
  const sum = { qtune: summarize(runs.qtune), bullmq: summarize(runs.bullmq) };
  const rows = [];
  for (const system of SYSTEMS) {
    const s = sum[system];
    if (s === null) {
      if (wanted.includes(system))
        rows.push([system, unavailable[system] ? 'not available' : 'failed', '', '', '', '', '']);
      continue;
    }
    rows.push([
      `${system} ${s.version ?? ''}`.trim(),
      fmt(s.tasksPerSec, 0),
      `${fmt(s.tasksPerSecMin, 0)}–${fmt(s.tasksPerSecMax, 0)}`,
      fmt(s.startP50, 2),
      fmt(s.startP99, 2),
      fmt(s.e2eP50, 2),
      fmt(s.e2eP99, 2),
    ]);
  }
  const ratios =
    sum.qtune && sum.bullmq
      ? {
          tasksPerSec: round3(ratio(sum.qtune.tasksPerSec, sum.bullmq.tasksPerSec)),
          startP50: round3(ratio(sum.qtune.startP50, sum.bullmq.startP50)),
          startP99: round3(ratio(sum.qtune.startP99, sum.bullmq.startP99)),
          e2eP50: round3(ratio(sum.qtune.e2eP50, sum.bullmq.e2eP50)),
          e2eP99: round3(ratio(sum.qtune.e2eP99, sum.bullmq.e2eP99)),
        }
      : null;
  if (ratios)
    rows.push([
      'qtune/bullmq',
      `${fmt(ratios.tasksPerSec, 2)}x`,
      '',
      `${fmt(ratios.startP50, 2)}x`,
      `${fmt(ratios.startP99, 2)}x`,
      `${fmt(ratios.e2eP50, 2)}x`,
      `${fmt(ratios.e2eP99, 2)}x`,
    ]);
  printTable(
    `Throughput: ${opts.tasks} tasks, ${opts.workers} workers, medians of ${opts.rounds} rounds (latencies in ms; tasks/s higher is better, latency lower is better)`,
    ['system', 'tasks/s', 'range', 'start p50', 'start p99', 'e2e p50', 'e2e p99'],
    rows,
  );

  if (opts.withRate) {
    const rateRows = [];
    for (const system of SYSTEMS) {
      const j = rateRuns[system];
      if (j === undefined) {
        if (wanted.includes(system))
          rateRows.push([system, unavailable[system] ? 'not available' : 'failed', '', '', '']);
        continue;
      }
      rateRows.push([
        `${system} ${j.version ?? ''}`.trim(),
        fmt(j.startLatencyMs?.p50, 2),
        fmt(j.startLatencyMs?.p99, 2),
        fmt(j.e2eLatencyMs?.p50, 2),
        fmt(j.e2eLatencyMs?.p99, 2),
      ]);
    }
    printTable(
      `Latency at a steady ${opts.rate} tasks/s (${opts.rateTasks} tasks, ${opts.workers} workers, ms)`,
      ['system', 'start p50', 'start p99', 'e2e p50', 'e2e p99'],
      rateRows,
    );
  }

  for (const why of Object.values(unavailable)) console.log(`\n${why}`);
  for (const e of errors) console.log(`\nerror: ${e.error}${e.stderr ? `\n${e.stderr}` : ''}`);

  const report = {
    generatedAt: new Date().toISOString(),
    machine,
    config: {
      rounds: opts.rounds,
      tasks: opts.tasks,
      workers: opts.workers,
      rate: opts.withRate ? opts.rate : null,
      rateTasks: opts.rateTasks,
      redisPort: opts.port,
    },
    summary: { ...sum, ratios },
    runs,
    rate: rateRuns,
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
  (error) => {
    console.error(`e2e: ${error.message}`);
    stopRedis();
    process.exit(1);
  },
);
