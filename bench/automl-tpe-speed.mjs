#!/usr/bin/env node
// TPE cost per suggest: once a study holds N finished trials of 5 float parameters, how long
// one suggestion takes, for qtune's TpeSampler next to Optuna's default TPESampler
// (`study.ask()` on an in-memory study), measured in the same run. Needs the compiled library
// (`npm run build`, or QTUNE_DIST=<dir> for another build) and, for the Optuna side, a Python
// with optuna.
//
//   node bench/automl-tpe-speed.mjs [--sizes 100,500,1000] [--suggests 50] [--only qtune|optuna]
//                                   [--python /usr/bin/python3]
//
// Prints the median time per suggest for each N and the ratio Optuna / qtune, and writes
// everything to bench/results/automl-tpe-speed.json.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { median, usageOf } from './lib.mjs';
import { rosenbrock } from './automl-functions.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);
const DIST = process.env.QTUNE_DIST ?? path.join(ROOT, 'dist');
const PEER = path.join(BENCH_DIR, 'peers', 'optuna_samplers.py');
const RESULTS_FILE = path.join(BENCH_DIR, 'results', 'automl-tpe-speed.json');
const DIMS = 5;

const load = (rel) => import(pathToFileURL(path.join(DIST, rel)).href);
const { Rng } = await load('automl/rng.js');
const { SearchSpace } = await load('automl/space.js');
const { TpeSampler } = await load('automl/samplers/tpe.js');

function parseArgs(argv) {
  const opts = { sizes: [100, 500, 1000], suggests: 50, only: null, python: '/usr/bin/python3' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--sizes') {
      opts.sizes = (argv[++i] ?? '').split(',').map(Number);
      if (!opts.sizes.every((n) => Number.isInteger(n) && n > 0))
        throw new Error(`--sizes needs positive integers, got '${argv[i] ?? ''}'`);
    } else if (arg === '--suggests') {
      opts.suggests = Number(argv[++i]);
      if (!Number.isInteger(opts.suggests) || opts.suggests <= 0)
        throw new Error(`--suggests needs a positive integer, got '${argv[i] ?? ''}'`);
    } else if (arg === '--only') {
      opts.only = argv[++i];
      if (opts.only !== 'qtune' && opts.only !== 'optuna')
        throw new Error(`--only takes qtune or optuna, got '${opts.only ?? ''}'`);
    } else if (arg === '--python') opts.python = argv[++i];
    else if (arg === '--help' || arg === '-h') {
      console.log(usageOf(import.meta.url));
      process.exit(0);
    } else throw new Error(`unknown argument '${arg}' (try --help)`);
  }
  return opts;
}

/**
 * Tells `n` finished trials (uniform in [-2, 2]^5, Rosenbrock values) and times `suggests`
 * suggestions without telling them, so the history stays at n. A few untimed suggestions warm
 * up the JIT first.
 */
function measureQtune(n, suggests) {
  const space = new SearchSpace(
    Array.from({ length: DIMS }, (_, i) => ({
      name: `x${i}`,
      type: 'float',
      low: -2,
      high: 2,
      log: false,
    })),
  );
  const sampler = new TpeSampler(space, { seed: 0 });
  const rng = new Rng(0);
  for (let number = 0; number < n; number++) {
    const params = {};
    for (let i = 0; i < DIMS; i++) params[`x${i}`] = rng.uniform(-2, 2);
    const value = rosenbrock(Array.from({ length: DIMS }, (_, i) => params[`x${i}`]));
    sampler.tell({ number, params, state: 'complete', value });
  }
  for (let w = 0; w < 10; w++) sampler.suggest(n + suggests + w, []);
  const times = [];
  for (let s = 0; s < suggests; s++) {
    const t0 = performance.now();
    sampler.suggest(n + s, []);
    times.push(performance.now() - t0);
  }
  return { trials: n, medianMs: median(times), timesMs: times };
}

function runOptuna(opts) {
  const args = [
    PEER,
    'speed',
    '--sizes',
    opts.sizes.join(','),
    '--suggests',
    String(opts.suggests),
  ];
  const run = spawnSync(opts.python, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (run.error !== undefined) return { error: `${opts.python}: ${run.error.message}` };
  if (run.status !== 0) {
    const last = run.stderr.trim().split('\n').at(-1);
    return { error: `optuna_samplers.py exited ${run.status}: ${last}` };
  }
  return JSON.parse(run.stdout);
}

const opts = parseArgs(process.argv.slice(2));
const qtune = opts.only === 'optuna' ? [] : opts.sizes.map((n) => measureQtune(n, opts.suggests));
let optuna = { skipped: true };
if (opts.only !== 'qtune') {
  optuna = runOptuna(opts);
  if (optuna.error !== undefined) console.log(`optuna peer skipped: ${optuna.error}`);
}

const rows = opts.sizes.map((n) => {
  const ours = qtune.find((r) => r.trials === n);
  const theirs = optuna.rows?.find((r) => r.trials === n);
  return { trials: n, qtuneMs: ours?.medianMs ?? null, optunaMs: theirs?.medianMs ?? null };
});
const ms = (v) => (v === null ? '-' : v.toFixed(3));
const header = ['finished trials', 'qtune TPE ms', 'optuna TPE ms', 'optuna / qtune'];
const cells = rows.map((r) => [
  r.trials.toLocaleString('en-US'),
  ms(r.qtuneMs),
  ms(r.optunaMs),
  r.qtuneMs !== null && r.optunaMs !== null ? `${(r.optunaMs / r.qtuneMs).toFixed(1)}x` : '-',
]);
const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
console.log(
  `\nTime per suggest, median of ${opts.suggests}, ${DIMS} float parameters` +
    (optuna.optuna !== undefined ? ` (Optuna ${optuna.optuna})` : ''),
);
console.log(header.map((h, i) => h.padStart(widths[i])).join('  '));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const c of cells) console.log(c.map((v, i) => v.padStart(widths[i])).join('  '));

mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
writeFileSync(
  RESULTS_FILE,
  `${JSON.stringify(
    {
      generatedAt: new Date().toISOString(),
      machine: { node: process.version, cpuModel: os.cpus()[0]?.model?.trim() ?? 'unknown' },
      config: { ...opts, dims: DIMS },
      optuna:
        optuna.error !== undefined
          ? { error: optuna.error }
          : optuna.skipped
            ? { skipped: true }
            : { version: optuna.optuna, rows: optuna.rows },
      summary: rows,
      qtune,
    },
    null,
    2,
  )}\n`,
);
console.log(`wrote ${path.relative(ROOT, RESULTS_FILE)}`);
