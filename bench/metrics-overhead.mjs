#!/usr/bin/env node
// What watching costs: `qtune bench` with its workers serving Prometheus metrics and scraped
// every second (`--metrics`), next to the same run without, alternating in the same process
// so both see the same machine. Builds nothing: run `npm run build` first.
//
//   node bench/metrics-overhead.mjs [--rounds 5] [--tasks 20000] [--workers 2] [--concurrency 50]
//
// Each round runs both orders' halves (off then on, or on then off, alternating by round),
// each on a fresh embedded broker. Prints the median tasks/s of each, the median of the
// per-round ratios (on/off), and writes bench/results/latest-metrics-overhead.json.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { benchOptions, fmt, median, printTable, ratio, runJson, runningChild } from './lib.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const RESULTS_FILE = path.join(BENCH_DIR, 'results', 'latest-metrics-overhead.json');

const args = benchOptions(import.meta.url, {
  rounds: { type: 'string', default: '5' },
  tasks: { type: 'string', default: '20000' },
  workers: { type: 'string', default: '2' },
  concurrency: { type: 'string', default: '50' },
});

process.on('SIGINT', () => {
  runningChild()?.kill('SIGKILL');
  process.exit(130);
});

const common = [
  CLI,
  'bench',
  '--json',
  '--tasks',
  args.tasks,
  '--workers',
  args.workers,
  '--concurrency',
  args.concurrency,
];
const runs = { off: [], on: [] };
const ratios = [];
let scrapes = [];
for (let round = 1; round <= Number(args.rounds); round++) {
  const order = round % 2 === 1 ? ['off', 'on'] : ['on', 'off'];
  const got = {};
  for (const mode of order) {
    const res = await runJson(
      `bench ${mode}`,
      process.execPath,
      mode === 'on' ? [...common, '--metrics'] : common,
      { cwd: ROOT, env: { QTUNE_BROKER: '' }, timeoutS: 300 },
    );
    if (!res.json) {
      console.error(`round ${round} ${mode}: ${res.error ?? 'no result'}\n${res.stderr ?? ''}`);
      process.exit(1);
    }
    got[mode] = res.json.tasksPerSec;
    runs[mode].push(res.json.tasksPerSec);
    if (mode === 'on') scrapes.push(res.json.scrapes);
  }
  ratios.push(ratio(got.on, got.off));
  console.log(
    `round ${round}: off ${fmt(got.off, 0)} tasks/s, on ${fmt(got.on, 0)} tasks/s (${fmt(ratio(got.on, got.off), 3)})`,
  );
}

const result = {
  machine: { cpus: (await import('node:os')).cpus().length, node: process.version },
  tasks: Number(args.tasks),
  workers: Number(args.workers),
  off: { median: median(runs.off), runs: runs.off },
  on: { median: median(runs.on), runs: runs.on, scrapes },
  sameRoundRatio: median(ratios),
};
printTable(
  `metrics overhead: ${args.tasks} no-op tasks, ${args.workers} workers, ${args.rounds} rounds`,
  ['worker metrics', 'tasks/s', 'range', 'same round'],
  [
    [
      'off',
      fmt(result.off.median, 0),
      `${fmt(Math.min(...runs.off), 0)}–${fmt(Math.max(...runs.off), 0)}`,
      '1.000',
    ],
    [
      'on, scraped every 1 s',
      fmt(result.on.median, 0),
      `${fmt(Math.min(...runs.on), 0)}–${fmt(Math.max(...runs.on), 0)}`,
      fmt(result.sameRoundRatio, 3),
    ],
  ],
);
mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
writeFileSync(RESULTS_FILE, JSON.stringify(result, null, 2) + '\n');
