// Dashboard with big data: an experiment of T trials with R reports each and a job of N items
// with a result row each, in a SQLite store in a temp dir; a gateway (createGateway, no auth, on
// loopback) serves the dashboard over it. Prints the median time of each JSON endpoint the
// job and experiment pages read, the bytes they answer, and, with Debian's Chromium, the time
// from navigation to the first meaningful paint (the page's numbers shown and its plots drawn),
// and to the experiment page's extras drawn (timeline, slice, contour) and the compare page's plot.
// Needs `npm run build` first.
// Usage: node bench/dashboard.mjs [--trials 10000] [--reports 10] [--items 1000000] [--rounds 5] [--no-browser]
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
/* global fetch, document, requestAnimationFrame */
import { EmbeddedBroker } from '../dist/broker/embedded/index.js';
import { createGateway } from '../dist/gateway/gateway.js';
import { SqliteStore } from '../dist/store/sqlite/index.js';
import { benchOptions, fmt, median, printTable } from './lib.mjs';

const args = benchOptions(import.meta.url, {
  trials: { type: 'string', default: '10000' },
  reports: { type: 'string', default: '10' },
  items: { type: 'string', default: '1000000' },
  rounds: { type: 'string', default: '5' },
  'no-browser': { type: 'boolean', default: false },
});
const T = Number(args.trials);
const R = Number(args.reports);
const N = Number(args.items);
const ROUNDS = Number(args.rounds);
const CHROMIUM = '/usr/bin/chromium';

const dir = mkdtempSync(join(tmpdir(), 'qtune-dash-bench-'));
const store = new SqliteStore({ path: join(dir, 'store.db') });
const broker = await EmbeddedBroker.open({ path: join(dir, 'broker.db') });
let app;
let browser;
try {
  let t0 = performance.now();
  const now = Date.now() - 3_600_000;
  await store.experiments.createExperiment('big', {
    objective: { metric: 'loss', direction: 'minimize' },
  });
  for (let n = 0; n < T; n++) {
    await store.experiments.addTrial({
      experiment: 'big',
      number: n,
      params: { x: Math.random(), y: Math.random() },
      taskId: `t-${n}`,
      createdAt: now + n,
    });
  }
  await store.experiments.markRunning(
    'big',
    Array.from({ length: T }, (_, n) => n),
  );
  for (let n = 0; n < T; n++) {
    for (let s = 1; s <= R; s++) {
      await store.experiments.recordReport('big', {
        number: n,
        step: s,
        value: 1 / s + Math.random(),
        decision: 'continue',
        at: now + n,
      });
    }
    // Eight workers on four hosts, each running its trials one after another.
    const w = n % 8;
    const start = now + Math.floor(n / 8) * 300;
    await store.experiments.finishTrial('big', n, {
      status: n % 20 === 0 ? 'failed' : n % 9 === 0 ? 'pruned' : 'complete',
      value: Math.random(),
      ...(n % 20 === 0 && { error: 'HANDLER_FAILED: boom' }),
      attempt: n % 50 === 0 ? 2 : 1,
      worker: { host: `gpu-${w >> 1}`, pid: 100 + w },
      startedAt: start,
      finishedAt: start + 250,
    });
  }
  console.log(
    `experiment: ${T} trials, ${T * R} reports stored in ${fmt((performance.now() - t0) / 1000)} s`,
  );

  t0 = performance.now();
  await store.jobs.upsertJob({ name: 'big', queue: 'big', table: 'big', keyFields: [] });
  await broker.declareQueue('big');
  await broker.declareQueue('big.results');
  await store.results.ensureResultTable('big');
  const CHUNK = 10_000;
  for (let at = 0; at < N; at += CHUNK) {
    const items = [];
    const rows = [];
    for (let i = at; i < Math.min(N, at + CHUNK); i++) {
      const id = `item-${String(i).padStart(8, '0')}`;
      items.push({ id, item: { i }, payload: { i } });
      const finishedAt = now + Math.floor((i / N) * 3_600_000);
      rows.push({
        id,
        taskId: `task-${i}`,
        ok: i % 50 !== 0,
        ...(i % 50 === 0 ? { errorCode: 'HANDLER_ERROR', errorMessage: 'boom' } : { value: { i } }),
        host: 'gpu-box',
        pid: 1,
        workerId: `w-${i % 8}`,
        attempt: 1,
        durationMs: 5,
        startedAt: finishedAt - 5,
        finishedAt,
      });
    }
    await store.jobs.addJobItems('big', items);
    await store.results.upsertResults('big', rows);
  }
  console.log(
    `job: ${N} items and result rows stored in ${fmt((performance.now() - t0) / 1000)} s`,
  );

  app = createGateway({
    broker,
    auth: { tokens: [], disabled: true },
    dashboard: { store: async () => store },
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });

  const endpoints = [
    '/v1/dashboard/overview',
    '/v1/dashboard/jobs/big',
    '/v1/dashboard/jobs/big/results?limit=20',
    '/v1/dashboard/experiments/big',
    '/v1/dashboard/experiments/big/trials?limit=20&sort=value',
    // The experiment page's extras read the trials once a second at most: timed uncached.
    '/v1/dashboard/experiments/big/timeline',
    '/v1/dashboard/experiments/big/timeline?last=100',
    '/v1/dashboard/experiments/big/slice?param=x',
    '/v1/dashboard/experiments/big/contour?x=x&y=y',
    `/v1/dashboard/experiments/big/trials/${Math.floor(T / 2)}`,
    '/v1/dashboard/compare?names=big',
  ];
  const cached = /\/(timeline|slice|contour)|\/compare/;
  const rows = [];
  for (const path of endpoints) {
    const times = [];
    let bytes = 0;
    for (let r = 0; r < ROUNDS; r++) {
      if (cached.test(path)) await new Promise((resolve) => setTimeout(resolve, 1_100));
      const s = performance.now();
      const res = await fetch(url + path);
      const body = await res.arrayBuffer();
      times.push(performance.now() - s);
      bytes = body.byteLength;
      if (!res.ok) throw new Error(`${path}: ${res.status}`);
    }
    rows.push([path, fmt(median(times)), String(bytes)]);
  }
  printTable(`dashboard JSON, median of ${ROUNDS}`, ['endpoint', 'ms', 'bytes'], rows);

  if (!args['no-browser'] && existsSync(CHROMIUM)) {
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    });
    const page = await browser.newPage();
    const pages = [
      ['job page', '#/job/big', '#job-done', ['#rate-plot canvas'], '#job-workers table'],
      ['experiment page', '#/experiment/big', '#exp-total', ['#history-plot canvas'], undefined],
      [
        'experiment page with timeline, slice and contour',
        '#/experiment/big',
        '#exp-total',
        [
          '#history-plot canvas',
          '#timeline-plot[data-rows]',
          '#slice-plot canvas',
          '#contour-plot[data-cells]',
        ],
        undefined,
      ],
      [
        'compare page',
        '#/compare?names=big',
        '#compare-experiments',
        ['#compare-plot canvas'],
        undefined,
      ],
    ];
    const paint = [];
    for (const [label, hash, stat, canvas, settled] of pages) {
      const times = [];
      for (let r = 0; r < ROUNDS; r++) {
        await page.goto('about:blank');
        // Requests the previous round left in flight (the experiment page's extras, its next
        // poll) end before the next round: each round is one user opening the page.
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        // Timed in the page (the gateway shares this process, so a slow query would delay
        // playwright's own messages): from navigation start to the first frame with the page's
        // numbers and its plot.
        await page.goto(`${url}/${hash}`, { waitUntil: 'commit' });
        const ms = await page.evaluate(
          ([statSel, canvasSels]) =>
            new Promise((resolve) => {
              const check = () => {
                const el = document.querySelector(statSel);
                if (
                  el &&
                  el.textContent !== '–' &&
                  canvasSels.every((sel) => document.querySelector(sel))
                ) {
                  resolve(performance.now());
                  return;
                }
                requestAnimationFrame(check);
              };
              check();
            }),
          [stat, canvas],
        );
        times.push(ms);
        // Not timed: the job page's slower worker table, so the next round starts idle.
        if (settled) await page.waitForSelector(settled);
      }
      paint.push([label, fmt(median(times))]);
    }
    printTable(
      `first meaningful paint in Chromium (numbers and plot shown), median of ${ROUNDS}`,
      ['page', 'ms'],
      paint,
    );
  }
} finally {
  await browser?.close();
  await app?.close();
  await broker.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
