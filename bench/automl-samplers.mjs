#!/usr/bin/env node
// Sampler quality: best value found in N sequential trials on Branin, Hartmann6 and
// Rosenbrock-5D, for qtune's TPE and random samplers next to Optuna's default TPESampler and
// RandomSampler, measured in the same run. Needs the compiled library (`npm run build`, or
// QTUNE_DIST=<dir> for another build) and, for the Optuna side, a Python with optuna.
//
//   node bench/automl-samplers.mjs [--seeds 20] [--trials 100] [--only qtune|optuna]
//                                  [--functions branin,hartmann6,rosenbrock5] [--python /usr/bin/python3]
//
// Seeds are 0..seeds-1 for every sampler. Prints median, Q1 and Q3 of the best value over the
// seeds per function and sampler, and writes everything to bench/results/automl-samplers.json.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { printTable, usageOf } from './lib.mjs';
import { FUNCTIONS } from './automl-functions.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);
const DIST = process.env.QTUNE_DIST ?? path.join(ROOT, 'dist');
const PEER = path.join(BENCH_DIR, 'peers', 'optuna_samplers.py');
const RESULTS_FILE = path.join(BENCH_DIR, 'results', 'automl-samplers.json');

const load = (rel) => import(pathToFileURL(path.join(DIST, rel)).href);
const { SearchSpace } = await load('automl/space.js');
const { RandomSampler } = await load('automl/samplers/random.js');
const { TpeSampler } = await load('automl/samplers/tpe.js');

function parseArgs(argv) {
  const opts = {
    seeds: 20,
    trials: 100,
    only: null,
    functions: Object.keys(FUNCTIONS),
    python: '/usr/bin/python3',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--seeds' || arg === '--trials') {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value <= 0)
        throw new Error(`${arg} needs a positive integer, got '${argv[i] ?? ''}'`);
      opts[arg.slice(2)] = value;
    } else if (arg === '--only') {
      opts.only = argv[++i];
      if (opts.only !== 'qtune' && opts.only !== 'optuna')
        throw new Error(`--only takes qtune or optuna, got '${opts.only ?? ''}'`);
    } else if (arg === '--functions') {
      opts.functions = (argv[++i] ?? '').split(',');
      for (const f of opts.functions)
        if (!(f in FUNCTIONS))
          throw new Error(`unknown function '${f}' (known: ${Object.keys(FUNCTIONS).join(', ')})`);
    } else if (arg === '--python') opts.python = argv[++i];
    else if (arg === '--help' || arg === '-h') {
      console.log(usageOf(import.meta.url));
      process.exit(0);
    } else throw new Error(`unknown argument '${arg}' (try --help)`);
  }
  return opts;
}

/** Quantile with linear interpolation between order statistics (numpy's default). */
function quantile(values, p) {
  const s = [...values].sort((a, b) => a - b);
  const h = (s.length - 1) * p;
  const lo = Math.floor(h);
  return s[lo] + ((s[Math.min(lo + 1, s.length - 1)] ?? s[lo]) - s[lo]) * (h - lo);
}

/** Best value of `trials` sequential trials of `fn` for each seed. */
function runQtune(makeSampler, fn, bounds, opts) {
  const space = new SearchSpace(
    bounds.map(([low, high], i) => ({ name: `x${i}`, type: 'float', low, high, log: false })),
  );
  const best = [];
  const started = performance.now();
  for (let seed = 0; seed < opts.seeds; seed++) {
    const sampler = makeSampler(space, seed);
    let b = Infinity;
    for (let n = 0; n < opts.trials; n++) {
      const params = sampler.suggest(n, []);
      const value = fn(bounds.map((_, i) => params[`x${i}`]));
      b = Math.min(b, value);
      sampler.tell({ number: n, params, state: 'complete', value });
    }
    best.push(b);
  }
  return { best, seconds: (performance.now() - started) / 1000 };
}

function runOptuna(opts) {
  const run = spawnSync(
    opts.python,
    [
      PEER,
      'quality',
      '--samplers',
      'tpe,random',
      '--functions',
      opts.functions.join(','),
      '--seeds',
      String(opts.seeds),
      '--trials',
      String(opts.trials),
    ],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  );
  if (run.error !== undefined) return { error: `${opts.python}: ${run.error.message}` };
  if (run.status !== 0) {
    const last = run.stderr.trim().split('\n').at(-1);
    return { error: `optuna_samplers.py exited ${run.status}: ${last}` };
  }
  return JSON.parse(run.stdout);
}

const opts = parseArgs(process.argv.slice(2));
const results = [];
if (opts.only !== 'optuna') {
  const samplers = {
    tpe: (space, seed) => new TpeSampler(space, { seed }),
    random: (space, seed) => new RandomSampler(space, { seed }),
  };
  for (const name of opts.functions) {
    const { fn, bounds } = FUNCTIONS[name];
    for (const [sampler, make] of Object.entries(samplers)) {
      results.push({
        function: name,
        system: 'qtune',
        sampler,
        ...runQtune(make, fn, bounds, opts),
      });
    }
  }
}
let optuna = { skipped: true };
if (opts.only !== 'qtune') {
  console.log(`running Optuna through ${opts.python} (about a minute at the defaults)...`);
  optuna = runOptuna(opts);
  if (optuna.error !== undefined) console.log(`optuna peer skipped: ${optuna.error}`);
  else for (const r of optuna.results) results.push({ ...r, system: 'optuna' });
}

const summary = results.map((r) => ({
  function: r.function,
  sampler: `${r.system} ${r.sampler}`,
  median: quantile(r.best, 0.5),
  q1: quantile(r.best, 0.25),
  q3: quantile(r.best, 0.75),
  seconds: r.seconds,
}));
const order = ['qtune tpe', 'optuna tpe', 'qtune random', 'optuna random'];
summary.sort(
  (a, b) =>
    opts.functions.indexOf(a.function) - opts.functions.indexOf(b.function) ||
    order.indexOf(a.sampler) - order.indexOf(b.sampler),
);
const digits = (v) => (Math.abs(v) >= 10 ? 2 : 4);
printTable(
  `Best value after ${opts.trials} trials, over seeds 0..${opts.seeds - 1} (lower is better)`,
  ['function', 'sampler', 'median', 'Q1', 'Q3', 'seconds'],
  summary.map((s) => [
    `${s.function} (opt ${FUNCTIONS[s.function].optimum})`,
    s.sampler,
    s.median.toFixed(digits(s.median)),
    s.q1.toFixed(digits(s.q1)),
    s.q3.toFixed(digits(s.q3)),
    s.seconds.toFixed(1),
  ]),
  2,
);
const verdicts = opts.functions.flatMap((f) => {
  const ours = summary.find((s) => s.function === f && s.sampler === 'qtune tpe');
  const theirs = summary.find((s) => s.function === f && s.sampler === 'optuna tpe');
  if (ours === undefined || theirs === undefined) return [];
  return [`${f}: ${ours.median <= theirs.median ? 'at or below' : 'ABOVE'} Optuna's TPE median`];
});
if (verdicts.length > 0) console.log(`\nqtune TPE median: ${verdicts.join('; ')}`);

mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
writeFileSync(
  RESULTS_FILE,
  `${JSON.stringify(
    {
      generatedAt: new Date().toISOString(),
      machine: { node: process.version, cpuModel: os.cpus()[0]?.model?.trim() ?? 'unknown' },
      config: opts,
      optuna:
        optuna.error !== undefined
          ? { error: optuna.error }
          : optuna.skipped
            ? { skipped: true }
            : { version: optuna.optuna },
      summary,
      runs: results,
    },
    null,
    2,
  )}\n`,
);
console.log(`wrote ${path.relative(ROOT, RESULTS_FILE)}`);
