#!/usr/bin/env node
// How long a Prometheus scrape of `qtune serve` takes with many queues: declares N queues (with
// a few messages each) on a fresh embedded broker, starts `qtune serve` on it as its own
// process, and times `GET /metrics` (the answer read whole). Builds nothing: run
// `npm run build` first.
//
//   node bench/metrics-scrape.mjs [--queues 1000] [--scrapes 20]
//
// Prints the median and p90 scrape time and the answer's size, and writes
// bench/results/latest-metrics-scrape.json.
/* global fetch */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { benchOptions, fmt, median } from './lib.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');
const RESULTS_FILE = path.join(BENCH_DIR, 'results', 'latest-metrics-scrape.json');
const TOKEN = 'bench-scrape-token-0123456789';

const args = benchOptions(import.meta.url, {
  queues: { type: 'string', default: '1000' },
  scrapes: { type: 'string', default: '20' },
});
const queues = Number(args.queues);

const dir = mkdtempSync(path.join(os.tmpdir(), 'qtune-scrape-'));
const brokerPath = path.join(dir, 'broker.db');
const { EmbeddedBroker } = await import(path.join(ROOT, 'dist', 'broker', 'embedded', 'index.js'));
const { envelopeMessage } = await import(path.join(ROOT, 'dist', 'broker', 'envelope-message.js'));
const { createEnvelope } = await import(path.join(ROOT, 'dist', 'protocol', 'envelope.js'));
const broker = await EmbeddedBroker.open({ path: brokerPath });
for (let i = 0; i < queues; i++) {
  const q = `queue-${String(i).padStart(4, '0')}`;
  await broker.declareQueue(q);
  await broker.publish(
    q,
    Array.from({ length: 3 }, () => envelopeMessage(createEnvelope({ type: 'task', payload: i }))),
  );
}
await broker.close();

const serve = spawn(
  process.execPath,
  [CLI, 'serve', '--port', '0', '--broker', brokerPath, '--store', path.join(dir, 'store.db')],
  {
    env: { ...process.env, QTUNE_TOKENS: `prom:producer:${TOKEN}` },
    stdio: ['ignore', 'ignore', 'pipe'],
  },
);
let stderr = '';
const url = await new Promise((resolve, reject) => {
  serve.stderr.on('data', (b) => {
    stderr += b;
    const m = /gateway listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
    if (m) resolve(m[1]);
  });
  serve.on('exit', () => reject(new Error(`qtune serve exited: ${stderr}`)));
});

const times = [];
let bytes = 0;
let samples = 0;
try {
  for (let i = 0; i <= Number(args.scrapes); i++) {
    const t0 = performance.now();
    const res = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const text = await res.text();
    const ms = performance.now() - t0;
    if (res.status !== 200) throw new Error(`scrape answered ${res.status}: ${text}`);
    if (i === 0) continue; // the first scrape opens the store and warms up
    times.push(ms);
    bytes = text.length;
    samples = text.split('\n').filter((l) => l.startsWith('qtune_queue_messages{')).length;
  }
} finally {
  serve.kill('SIGTERM');
  await new Promise((r) => serve.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
if (samples !== queues * 4) throw new Error(`expected ${queues * 4} queue samples, got ${samples}`);
times.sort((a, b) => a - b);
const result = {
  machine: { cpus: os.cpus().length, node: process.version },
  queues,
  scrapes: times.length,
  medianMs: median(times),
  p90Ms: times[Math.floor(times.length * 0.9)],
  answerBytes: bytes,
};
console.log(
  `GET /metrics with ${queues} queues: median ${fmt(result.medianMs)} ms, p90 ${fmt(result.p90Ms)} ms, ${(bytes / 1024).toFixed(0)} KiB (${times.length} scrapes)`,
);
mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
writeFileSync(RESULTS_FILE, JSON.stringify(result, null, 2) + '\n');
