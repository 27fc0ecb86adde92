#!/usr/bin/env node
// Early stopping on a synthetic learning-curve problem: how much training budget random search
// needs with and without a pruner to match what full-budget random search finds in N trials.
// Needs the compiled library (`npm run build`, or QTUNE_DIST=<dir> for another build).
//
//   node bench/automl-asha.mjs [--seeds 20] [--trials 100] [--workers 4] [--max-resource 81]
//                              [--eta 3] [--no-optuna] [--python /usr/bin/python3]
//
// Every method runs the same configurations in the same order (a RandomSampler with the seed),
// on a simulated pool of workers. Optuna's SuccessiveHalvingPruner runs on the very same curves
// through bench/peers/optuna_asha.py when a Python with optuna is found. Prints a table of
// medians over the seeds and writes everything to bench/results/automl-asha.json.
// The problem and the measure are described in bench/README.md.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { median as medianOf, printTable, usageOf } from './lib.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);
const DIST = process.env.QTUNE_DIST ?? path.join(ROOT, 'dist');
const PEER = path.join(BENCH_DIR, 'peers', 'optuna_asha.py');
const RESULTS_FILE = path.join(BENCH_DIR, 'results', 'automl-asha.json');

const load = (rel) => import(pathToFileURL(path.join(DIST, rel)).href);
const { Rng } = await load('automl/rng.js');
const { SearchSpace, space } = await load('automl/space.js');
const { RandomSampler } = await load('automl/samplers/random.js');
const { SuccessiveHalvingPruner } = await load('automl/pruners/asha.js');
const { HyperbandPruner } = await load('automl/pruners/hyperband.js');
const { MedianPruner } = await load('automl/pruners/median.js');
const { NopPruner } = await load('automl/pruners/none.js');

function parseArgs(argv) {
  const opts = {
    seeds: 20,
    trials: 100,
    workers: 4,
    maxResource: 81,
    eta: 3,
    optuna: true,
    python: '/usr/bin/python3',
  };
  const numeric = {
    '--seeds': 'seeds',
    '--trials': 'trials',
    '--workers': 'workers',
    '--max-resource': 'maxResource',
    '--eta': 'eta',
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg in numeric) {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value <= 0)
        throw new Error(`${arg} needs a positive integer, got '${argv[i] ?? ''}'`);
      opts[numeric[arg]] = value;
    } else if (arg === '--no-optuna') opts.optuna = false;
    else if (arg === '--python') opts.python = argv[++i];
    else if (arg === '--help' || arg === '-h') {
      console.log(usageOf(import.meta.url));
      process.exit(0);
    } else throw new Error(`unknown argument '${arg}' (try --help)`);
  }
  return opts;
}

// ---------------------------------------------------------------- the problem
const SPACE = space()
  .float('lr', 1e-4, 1, { log: true })
  .float('momentum', 0, 0.99)
  .int('width', 16, 1024, { log: true })
  .float('dropout', 0, 0.5)
  .build();

/** Position of a value in [0, 1] along its parameter's internal (log where asked) coordinate. */
function unit(name, value) {
  const def = SPACE.get(name);
  const [lo, hi] = SearchSpace.internalBounds(def);
  return (SearchSpace.toInternal(def, value) - lo) / (hi - lo);
}

/**
 * The learning curve of trial `number` (index = step, 1..maxResource) and the time each of its
 * steps takes. L(t) = L∞ + 0.6·t^(−β) + 0.01·ε: a high learning rate learns fast (β up to 1)
 * but its asymptote L∞ is worse past u_lr = 0.6, so curves cross.
 */
function trialCurve(params, seed, number, maxResource) {
  const lr = unit('lr', params.lr);
  const momentum = unit('momentum', params.momentum);
  const width = unit('width', params.width);
  const dropout = unit('dropout', params.dropout);
  const asymptote =
    0.1 +
    0.8 * ((lr - 0.6) ** 2 + 0.5 * (momentum - 0.8) ** 2 + 0.3 * (dropout - 0.35) ** 2) -
    0.05 * width;
  const beta = 0.4 + 0.6 * lr;
  const noise = new Rng(seed ^ 0x5eed, number);
  const curve = [0];
  for (let t = 1; t <= maxResource; t++) {
    curve.push(asymptote + 0.6 * t ** -beta + 0.01 * noise.normal());
  }
  return { curve, stepTime: 0.5 + width };
}

// ---------------------------------------------------------------- the simulated workers
/**
 * A discrete-event simulation of `workers` workers: each runs one trial at a time, one step per
 * `stepTime`, reporting after every step; a trial stops when the pruner says so or at
 * `maxResource` (complete). The next event is the worker whose step ends first (ties: lowest
 * worker index). Stops once a complete trial's final value is ≤ target, or after `maxTrials`.
 */
function simulate({ seed, pruner, target, maxTrials, workers, maxResource }) {
  const sampler = new RandomSampler(SPACE, { seed });
  const slots = [];
  const curves = [];
  let next = 0;
  let budget = 0;
  let now = 0;
  let best = Infinity;
  let budgetAtTarget;
  const pruned = new Set();
  const start = (w) => {
    if (next >= maxTrials) return false;
    const number = next++;
    const { curve, stepTime } = trialCurve(sampler.suggest(number, []), seed, number, maxResource);
    curves.push({ curve, stepTime });
    slots[w] = { number, curve, stepTime, step: 0, at: now + stepTime };
    return true;
  };
  for (let w = 0; w < workers; w++) start(w);
  for (;;) {
    let w = -1;
    for (let i = 0; i < workers; i++) {
      if (slots[i] !== undefined && (w < 0 || slots[i].at < slots[w].at)) w = i;
    }
    if (w < 0) break;
    const trial = slots[w];
    now = trial.at;
    trial.step++;
    budget++;
    const value = trial.curve[trial.step];
    const decision = pruner.report(trial.number, trial.step, value);
    if (trial.step === maxResource) {
      pruner.tell({ number: trial.number, params: {}, state: 'complete', value });
      best = Math.min(best, value);
      if (best <= target) {
        budgetAtTarget = budget;
        break;
      }
    } else if (decision === 'prune') {
      pruned.add(trial.number);
      pruner.tell({ number: trial.number, params: {}, state: 'pruned', value, step: trial.step });
    } else {
      trial.at = now + trial.stepTime;
      continue;
    }
    slots[w] = undefined;
    start(w);
  }
  return { budget: budgetAtTarget ?? null, trials: next, pruned, curves };
}

// ---------------------------------------------------------------- statistics and output
/** Median with a missing value (target not reached) counted as Infinity. */
function median(values) {
  return medianOf(values.map((v) => v ?? Infinity));
}

function fmt(value, digits = 0) {
  if (value === null || value === undefined) return '-';
  if (!Number.isFinite(value)) return 'not reached';
  return value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

function runOptuna(opts, perSeed) {
  const probe = spawnSync(opts.python, ['-c', 'import optuna; print(optuna.__version__)'], {
    encoding: 'utf8',
  });
  if (probe.status !== 0) {
    return {
      error: `no optuna for ${opts.python}: ${(probe.stderr || probe.error?.message || '').trim().split('\n').at(-1)}`,
    };
  }
  const input = JSON.stringify({
    workers: opts.workers,
    maxResource: opts.maxResource,
    eta: opts.eta,
    seeds: perSeed.map((s) => ({
      seed: s.seed,
      target: s.target,
      curves: s.peerCurves.map((c) => c.curve),
      stepTimes: s.peerCurves.map((c) => c.stepTime),
    })),
  });
  const run = spawnSync(opts.python, [PEER], {
    input,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (run.status !== 0)
    return { error: `optuna_asha.py exited ${run.status}: ${run.stderr.trim()}` };
  return { version: probe.stdout.trim(), ...JSON.parse(run.stdout) };
}

// ---------------------------------------------------------------- main
const opts = parseArgs(process.argv.slice(2));
const { workers, maxResource, eta } = opts;
const maxTrials = 50 * opts.trials;
const methods = {
  full: () => new NopPruner(),
  asha: () => new SuccessiveHalvingPruner({ minResource: 1, reductionFactor: eta, maxResource }),
  hyperband: () => new HyperbandPruner({ minResource: 1, maxResource, reductionFactor: eta }),
  median: () => new MedianPruner(),
};
const labels = {
  full: 'random, full budget',
  asha: 'random + ASHA',
  hyperband: 'random + Hyperband',
  median: 'random + median',
  optuna: 'random + ASHA (optuna)',
};

const perSeed = [];
const started = performance.now();
for (let seed = 1; seed <= opts.seeds; seed++) {
  // The target: the best final value among the first N configurations.
  const sampler = new RandomSampler(SPACE, { seed });
  let target = Infinity;
  let targetTrial = -1;
  for (let n = 0; n < opts.trials; n++) {
    const final = trialCurve(sampler.suggest(n, []), seed, n, maxResource).curve[maxResource];
    if (final < target) [target, targetTrial] = [final, n];
  }
  const row = { seed, target, targetTrial, methods: {} };
  for (const [name, make] of Object.entries(methods)) {
    const r = simulate({ seed, pruner: make(), target, maxTrials, workers, maxResource });
    row.methods[name] = { budget: r.budget, trials: r.trials };
    if (name === 'asha') {
      row.ashaPrunedTargetTrial = r.pruned.has(targetTrial);
      row.peerCurves = r.curves;
    }
  }
  perSeed.push(row);
}
const qtuneSeconds = (performance.now() - started) / 1000;

let optuna = { skipped: true };
if (opts.optuna) {
  optuna = runOptuna(opts, perSeed);
  if (optuna.error === undefined) {
    optuna.results.forEach((r, i) => {
      perSeed[i].methods.optuna = { budget: r.budget, trials: r.trials };
    });
  } else console.log(`optuna peer skipped: ${optuna.error}`);
}
for (const row of perSeed) delete row.peerCurves;

const fullBudgets = perSeed.map((r) => r.methods.full.budget);
const summary = {};
for (const name of Object.keys(labels)) {
  if (perSeed[0].methods[name] === undefined) continue;
  const budgets = perSeed.map((r) => r.methods[name].budget);
  const ratios = budgets.map((b, i) => (b === null ? Infinity : b / fullBudgets[i]));
  summary[name] = {
    medianBudget: median(budgets),
    ratioOfMedians: median(budgets) / median(fullBudgets),
    medianRatio: median(ratios),
    medianTrials: median(perSeed.map((r) => r.methods[name].trials)),
    reached: budgets.filter((b) => b !== null).length,
  };
}
const sameAsOptuna =
  perSeed[0].methods.optuna === undefined
    ? null
    : perSeed.filter(
        (r) =>
          r.methods.optuna.budget === r.methods.asha.budget &&
          r.methods.optuna.trials === r.methods.asha.trials,
      ).length;

printTable(
  `Budget (steps, all trials) to match the best of ${opts.trials} full-budget random trials: ` +
    `${maxResource} steps per trial, ${workers} workers, η = ${eta}, median over ${opts.seeds} seeds`,
  ['method', 'budget', 'vs full', 'per-seed ratio', 'trials', 'reached'],
  Object.entries(summary).map(([name, s]) => [
    labels[name],
    fmt(s.medianBudget, Number.isInteger(s.medianBudget) ? 0 : 1),
    fmt(s.ratioOfMedians, 3),
    fmt(s.medianRatio, 3),
    fmt(s.medianTrials, Number.isInteger(s.medianTrials) ? 0 : 1),
    `${s.reached}/${opts.seeds}`,
  ]),
);
const prunedTarget = perSeed.filter((r) => r.ashaPrunedTargetTrial).length;
console.log(
  `\nASHA pruned the configuration that set the target in ${prunedTarget} of ${opts.seeds} seeds.`,
);
if (sameAsOptuna !== null) {
  console.log(
    `Optuna ${optuna.version} reached the target with the same budget and trials in ` +
      `${sameAsOptuna} of ${opts.seeds} seeds.`,
  );
}
console.log(
  `Simulation time: qtune ${qtuneSeconds.toFixed(1)} s` +
    (optuna.seconds !== undefined ? `, optuna ${optuna.seconds.toFixed(1)} s` : ''),
);

mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
writeFileSync(
  RESULTS_FILE,
  `${JSON.stringify(
    {
      generatedAt: new Date().toISOString(),
      machine: { node: process.version, cpuModel: os.cpus()[0]?.model?.trim() ?? 'unknown' },
      config: { ...opts, maxTrials, minResource: 1 },
      optuna:
        optuna.error !== undefined
          ? { error: optuna.error }
          : optuna.skipped
            ? { skipped: true }
            : { version: optuna.version, seconds: optuna.seconds, sameAsQtune: sameAsOptuna },
      summary,
      ashaPrunedTargetTrial: prunedTarget,
      seeds: perSeed,
    },
    null,
    2,
  )}\n`,
);
console.log(`wrote ${path.relative(ROOT, RESULTS_FILE)}`);
