#!/usr/bin/env node
// Scheduler overhead: no-op trials per second end to end, qtune's experiment scheduler on the
// embedded broker with 2 local worker processes, next to Optuna with its SQLite storage and 2
// worker processes, measured in the same run on this machine.
//
//   npm run build && node bench/automl-trials.mjs [--rounds 3] [--trials 2000]
//        [--optuna-trials 500] [--workers 2] [--concurrency 2,16] [--no-optuna] [--amqp]
//
// --amqp runs qtune on a RabbitMQ node started for the run (test/support/rabbitmq.mjs)
// instead of the embedded broker.
//
// Both sides search the same space (a log float and a categorical) with a random sampler,
// then with TPE; the objective returns 0 at once. qtune's rate runs from the experiment's
// creation to its last trial's finish (worker start-up included); Optuna's from study creation
// until every worker is done. Prints medians over the rounds; writes
// bench/results/automl-trials.json.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { median } from './lib.mjs';

const BENCH = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH);
const DIST = process.env.QTUNE_DIST ?? path.join(ROOT, 'dist');
const CLI = path.join(DIST, 'cli', 'main.js');

function args(argv) {
  const o = {
    amqp: false,
    rounds: 3,
    trials: 2000,
    optunaTrials: 500,
    workers: 2,
    concurrency: [2, 16],
    optuna: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--rounds') o.rounds = Number(v());
    else if (a === '--trials') o.trials = Number(v());
    else if (a === '--optuna-trials') o.optunaTrials = Number(v());
    else if (a === '--workers') o.workers = Number(v());
    else if (a === '--concurrency') o.concurrency = v().split(',').map(Number);
    else if (a === '--no-optuna') o.optuna = false;
    else if (a === '--amqp') o.amqp = true;
    else if (a === '--help') {
      console.log(
        'node bench/automl-trials.mjs [--rounds 3] [--trials 2000] [--optuna-trials 500] [--workers 2] [--concurrency 2,16] [--no-optuna]',
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return o;
}

async function qtuneRun(opts, sampler, concurrency) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qtune-bench-trials-'));
  try {
    writeFileSync(path.join(dir, 'noop.mjs'), 'export default async () => 0;\n');
    const spec = {
      name: `noop-${sampler}-${concurrency}-${path.basename(dir).slice(-6)}`,
      space: {
        lr: { type: 'float', low: 1e-5, high: 1e-1, log: true },
        optimizer: { type: 'categorical', choices: ['sgd', 'adam'] },
      },
      sampler: { name: sampler, seed: 1 },
      maxTrials: opts.trials,
      concurrency,
      runner: { module: './noop.mjs' },
    };
    writeFileSync(path.join(dir, 'spec.json'), JSON.stringify(spec));
    const store = path.join(dir, 'experiments.db');
    const t0 = performance.now();
    const r = spawnSync(
      process.execPath,
      [
        CLI,
        '--broker',
        brokerUrl ?? path.join(dir, 'broker.db'),
        '--log-level',
        'warn',
        'experiment',
        '--store',
        store,
        'run',
        path.join(dir, 'spec.json'),
        '--workers',
        String(opts.workers),
        '--json',
      ],
      { encoding: 'utf8', timeout: 600_000 },
    );
    const wall = (performance.now() - t0) / 1000;
    if (r.status !== 0) throw new Error(`qtune experiment run failed (${r.status}): ${r.stderr}`);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1));
    if (summary.counts.complete !== opts.trials)
      throw new Error(`only ${summary.counts.complete} trials complete`);
    const { SqliteStore } = await import(
      pathToFileURL(path.join(DIST, 'store/sqlite/index.js')).href
    );
    const s = new SqliteStore({ path: store });
    const exp = await s.experiments.getExperiment(spec.name);
    const trials = await s.experiments.listTrials(spec.name);
    await s.close();
    const last = Math.max(...trials.map((t) => t.finishedAt));
    const seconds = (last - exp.createdAt) / 1000;
    return { seconds, wall, trialsPerSec: opts.trials / seconds };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function optunaRun(opts) {
  const r = spawnSync(
    '/usr/bin/python3',
    [
      path.join(BENCH, 'peers', 'optuna_trials.py'),
      '--trials',
      String(opts.optunaTrials),
      '--workers',
      String(opts.workers),
      '--sampler',
      'both',
      '--json',
    ],
    { encoding: 'utf8', timeout: 900_000 },
  );
  if (r.status !== 0) throw new Error(`optuna peer failed (${r.status}): ${r.stderr.slice(-2000)}`);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
}

const opts = args(process.argv.slice(2));
let rabbit;
let brokerUrl;
if (opts.amqp) {
  const { startRabbit } = await import('../test/support/rabbitmq.mjs');
  process.stderr.write('starting RabbitMQ ...\n');
  rabbit = await startRabbit();
  brokerUrl = rabbit.url;
  const stop = () => rabbit.stop().finally(() => process.exit(130));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
const runs = [];
for (let round = 1; round <= opts.rounds; round++) {
  for (const sampler of ['random', 'tpe']) {
    for (const c of opts.concurrency) {
      const r = await qtuneRun(opts, sampler, c);
      runs.push({ system: 'qtune', sampler, concurrency: c, trials: opts.trials, round, ...r });
      process.stderr.write(
        `round ${round}: qtune ${sampler} c=${c}: ${r.trialsPerSec.toFixed(0)} trials/s\n`,
      );
    }
  }
  if (opts.optuna) {
    for (const o of optunaRun(opts)) {
      runs.push({
        system: 'optuna',
        sampler: o.sampler,
        concurrency: opts.workers,
        trials: o.trials,
        round,
        seconds: o.seconds,
        trialsPerSec: o.trialsPerSec,
        version: o.version,
      });
      process.stderr.write(
        `round ${round}: optuna ${o.sampler}: ${o.trialsPerSec.toFixed(1)} trials/s\n`,
      );
    }
  }
}

const rows = [];
for (const sampler of ['random', 'tpe']) {
  const optuna = runs.filter((r) => r.system === 'optuna' && r.sampler === sampler);
  const optunaMedian = optuna.length ? median(optuna.map((r) => r.trialsPerSec)) : undefined;
  for (const c of opts.concurrency) {
    const q = runs.filter(
      (r) => r.system === 'qtune' && r.sampler === sampler && r.concurrency === c,
    );
    rows.push({
      system: opts.amqp ? 'qtune (rabbitmq)' : 'qtune (embedded)',
      sampler,
      concurrency: c,
      trials: opts.trials,
      trialsPerSec: median(q.map((r) => r.trialsPerSec)),
      vsOptuna: optunaMedian,
    });
  }
  if (optunaMedian !== undefined) {
    rows.push({
      system: `optuna ${optuna[0].version} (sqlite)`,
      sampler,
      concurrency: opts.workers,
      trials: opts.optunaTrials,
      trialsPerSec: optunaMedian,
    });
  }
}
console.log(
  `\nNo-op trials per second, ${opts.workers} worker processes, median of ${opts.rounds} round(s)`,
);
console.log('system                  sampler  in flight  trials  trials/s  vs optuna');
for (const r of rows) {
  console.log(
    `${r.system.padEnd(22)}  ${r.sampler.padEnd(7)}  ${String(r.concurrency).padStart(9)}  ${String(r.trials).padStart(6)}  ${r.trialsPerSec.toFixed(1).padStart(8)}  ${r.vsOptuna ? `${(r.trialsPerSec / r.vsOptuna).toFixed(1)}×`.padStart(9) : ''}`,
  );
}
console.log(`machine: ${os.cpus()[0]?.model} × ${os.cpus().length}, Node ${process.version}`);
mkdirSync(path.join(BENCH, 'results'), { recursive: true });
writeFileSync(
  path.join(BENCH, 'results', opts.amqp ? 'automl-trials-amqp.json' : 'automl-trials.json'),
  JSON.stringify(
    {
      date: new Date().toISOString(),
      machine: { cpu: os.cpus()[0]?.model, cores: os.cpus().length, node: process.version },
      options: opts,
      rows,
      runs,
    },
    null,
    2,
  ),
);
await rabbit?.stop();
