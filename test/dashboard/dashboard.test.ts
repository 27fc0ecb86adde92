/**
 * The web dashboard in real headless Chromium (Debian's, driven by playwright-core), over data
 * made by real runs: a job submitted with `qtune job submit`, worked by `qtune worker` and stored
 * by `qtune sink`; one experiment run to its end by `qtune experiment run`, another left running
 * (no workers) to be stopped from the page, a third interrupted (its scheduler paused by
 * SIGTERM) to be resumed from the page and finished by `qtune worker --experiment`. The gateway
 * is `qtune serve` with tokens.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedBroker } from '../../src/broker/embedded/index.js';
import { resultQueueOf } from '../../src/patterns/work-queue.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import {
  FIXTURES,
  ROOT,
  assertBuilt,
  exited,
  killAll,
  runCli,
  startCli,
  tempBroker,
} from '../cli/helpers.js';
import { waitFor } from '../support/wait.js';
import { startServe } from '../gateway/helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(ROOT, 'test-artifacts/dashboard');
const TOKENS = {
  admin: 'admin-secret-0123456789abcdef',
  producer: 'producer-secret-0123456789abcdef',
  viewer: 'viewer-secret-0123456789abcdef',
};
const TOKENS_ENV = `root:admin:${TOKENS.admin},alice:producer:${TOKENS.producer},vera:viewer:${TOKENS.viewer}`;
const ITEMS = 30;
const FAILING = 5;

let env: ReturnType<typeof tempBroker>;
let store: string;
let url: string;
let browser: Browser | undefined;
let page: Page;
let running: ChildProcess;
/** The spec file of the interrupted experiment, for its worker. */
let resumableSpec: string;
const children: ChildProcess[] = [];

function q(args: string[]) {
  return runCli([...args, '--broker', env.url, '--store', store], { timeoutMs: 90_000 });
}

async function withStore<T>(fn: (s: SqliteStore) => Promise<T>): Promise<T> {
  const s = new SqliteStore({ path: store });
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

async function withBroker<T>(fn: (b: EmbeddedBroker) => Promise<T>): Promise<T> {
  const b = await EmbeddedBroker.open({ path: env.url });
  try {
    return await fn(b);
  } finally {
    await b.close();
  }
}

function spec(name: string, maxTrials: number, seed = 5): string {
  const path = join(env.dir, `${name}.json`);
  writeFileSync(
    path,
    JSON.stringify({
      name,
      objective: { metric: 'loss', direction: 'minimize' },
      space: {
        x: { type: 'float', low: 0, high: 1 },
        k: { type: 'categorical', choices: ['a', 'b'] },
      },
      sampler: { name: 'random', seed },
      maxTrials,
      concurrency: 2,
      runner: { module: join(FIXTURES, 'trials/sleepy.mjs') },
    }),
  );
  return path;
}

/** `qtune experiment run SPEC --workers 0` in the background: a scheduler waiting for workers. */
function startScheduler(specPath: string): ChildProcess {
  const child = startCli([
    'experiment',
    'run',
    specPath,
    '--workers',
    '0',
    '--broker',
    env.url,
    '--store',
    store,
  ]);
  children.push(child);
  return child;
}

/** Pastes a token into the page's token box (it is kept in sessionStorage, never shown). */
async function useToken(token: string): Promise<void> {
  await page.fill('#token', token);
  await page.click('#token-form button[type=submit]');
}

async function text(selector: string): Promise<string> {
  return (await page.textContent(selector))?.trim() ?? '';
}

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

beforeAll(async () => {
  assertBuilt();
  expect(existsSync(CHROMIUM), `${CHROMIUM} (Debian package chromium) is missing`).toBe(true);
  mkdirSync(ARTIFACTS, { recursive: true });
  env = tempBroker();
  store = join(env.dir, 'store.db');

  // A job: 30 items, 5 of which fail (one attempt each, so they are dead-lettered).
  const input = join(env.dir, 'items.jsonl');
  writeFileSync(
    input,
    Array.from({ length: ITEMS }, (_, i) =>
      JSON.stringify({ name: `company-${i}`, fail: i < FAILING }),
    ).join('\n') + '\n',
  );
  expect((await q(['job', 'submit', 'co', '--input', input])).code).toBe(0);
  const worker = startCli([
    'worker',
    'co',
    '--module',
    join(FIXTURES, 'job/flaky.mjs'),
    '--max-attempts',
    '1',
    '--broker',
    env.url,
  ]);
  children.push(worker);
  await withBroker((b) =>
    waitFor(async () => (await b.stats(resultQueueOf('co'))).ready >= ITEMS, 60_000, 'results'),
  );
  worker.kill('SIGTERM');
  await exited(worker);
  expect((await q(['sink', 'co'])).code).toBe(0);

  // An experiment run to its end, and one left running without workers.
  const done = await q(['experiment', 'run', spec('done', 16), '--workers', '1']);
  expect(done.code, done.stderr).toBe(0);
  running = startScheduler(spec('waiting', 50));
  await waitFor(
    () => withStore(async (s) => (await s.experiments.experimentStatus('waiting')) === 'running'),
    30_000,
    'experiment "waiting" to run',
  );

  // An experiment interrupted after publishing its first trials: its scheduler paused on
  // SIGTERM, so it stays "running" in the store with no scheduler attached.
  resumableSpec = spec('resumable', 8, 11);
  const interrupted = startScheduler(resumableSpec);
  await waitFor(
    () => withStore(async (s) => (await s.experiments.counts('resumable')).running === 2),
    30_000,
    'experiment "resumable" to publish its first trials',
  );
  interrupted.kill('SIGTERM');
  expect((await exited(interrupted)).code).toBe(130);

  // A live worker on a queue of its own, for the overview's workers table.
  children.push(
    startCli(['worker', 'idle', '--module', join(FIXTURES, 'job/flaky.mjs'), '--broker', env.url]),
  );

  const serve = await startServe(['--broker', env.url, '--store', store], TOKENS_ENV);
  children.push(serve.child);
  url = serve.url;

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  killAll(children);
  await Promise.all(children.map((c) => exited(c)));
  env?.cleanup();
});

describe('the web dashboard in Chromium', () => {
  it('asks for a token, never shows it, and then shows queues, jobs and experiments as the store has them', async () => {
    await page.goto(`${url}/`);
    await waitFor(async () => (await text('#live')).includes('token'), 10_000, '401 hint');
    await useToken(TOKENS.admin);
    expect(await page.inputValue('#token')).toBe('');
    expect(await page.content()).not.toContain(TOKENS.admin);
    const job = await withStore((s) => s.results.resultCounts('co'));
    await page.waitForSelector('tr[data-job="co"]');
    expect(await text('tr[data-job="co"] [data-field=items]')).toBe(String(ITEMS));
    expect(await text('tr[data-job="co"] [data-field=done]')).toBe(String(job.ok));
    expect(await text('tr[data-job="co"] [data-field=failed]')).toBe(String(job.failed));
    expect(job.failed).toBe(FAILING);
    expect(await text('tr[data-queue="co"] [data-field=deadLettered]')).toBe(String(FAILING));
    const counts = await withStore((s) => s.experiments.counts('done'));
    expect(await text('tr[data-experiment="done"] [data-field=total]')).toBe(String(counts.total));
    expect(await text('tr[data-experiment="done"] [data-field=complete]')).toBe(
      String(counts.complete),
    );
    expect(await text('tr[data-experiment="waiting"] [data-field=status]')).toBe('running');
    await page.waitForSelector('#totals-plot canvas');
    expect(await page.getAttribute('#totals-plot', 'data-series')).toBe('2');
    await page.waitForSelector('#workers tr[data-worker]');
    expect(await text('#workers tr[data-worker] td:nth-child(3)')).toBe('idle');
    // A few samples in the plot before the screenshot (the gateway samples every 2 s).
    await waitFor(
      async () => {
        const res = await fetch(`${url}/v1/dashboard/overview`, {
          headers: { authorization: `Bearer ${TOKENS.admin}` },
        });
        return ((await res.json()) as { totals: unknown[] }).totals.length >= 3;
      },
      20_000,
      'three samples',
    );
    // The page's next poll draws them.
    const polled = await text('#live');
    await waitFor(async () => (await text('#live')) !== polled, 10_000, 'next poll');
    await shot('overview');
  });

  it('shows a job page with progress, a rate plot, results, an item looked up by id, and a retry that a viewer may not do', async () => {
    await page.goto(`${url}/#/job/co`);
    const counts = await withStore((s) => s.results.resultCounts('co'));
    await waitFor(async () => (await text('#job-done')) === String(counts.ok), 10_000, 'done');
    expect(await text('#job-failed')).toBe(String(counts.failed));
    expect(await text('#job-items')).toBe(String(ITEMS));
    expect(await text('#job-dead')).toBe(String(FAILING));
    await page.waitForSelector('#rate-plot canvas');
    expect(await page.getAttribute('#rate-plot', 'data-series')).toBe('1');
    await page.waitForSelector('#results-table tbody tr');
    expect(await page.locator('#results-table tbody tr').count()).toBe(20);
    await page.click('#results-next');
    await waitFor(
      async () => (await page.locator('#results-table tbody tr').count()) === ITEMS - 20,
      10_000,
      'second page',
    );

    // A failed item by id: its payload and its failure reason.
    const failed = await withStore((s) => s.results.listResults('co', { ok: false, limit: 1 }));
    await page.fill('#item-id', failed[0]!.id);
    await page.click('#lookup button');
    await page.waitForSelector('#item-result');
    expect(await text('#item-result')).toContain('cannot describe company-');
    const workers = await withStore((s) => s.results.workerStats('co'));
    await page.waitForSelector('#job-workers tbody tr');
    expect(await page.locator('#job-workers tbody tr').count()).toBe(workers.length);
    await shot('job');

    // A viewer reads the page but cannot retry: 403 shown, nothing requeued.
    await useToken(TOKENS.viewer);
    await page.click('#retry');
    await waitFor(async () => (await text('#action-result')).includes('403'), 10_000, '403');
    expect(await withBroker(async (b) => (await b.stats('co')).deadLettered)).toBe(FAILING);

    // A producer can: the dead letters go back to the queue.
    await useToken(TOKENS.producer);
    await page.click('#retry');
    await waitFor(
      () =>
        withBroker(async (b) => {
          const s = await b.stats('co');
          return s.deadLettered === 0 && s.ready + s.delayed === FAILING;
        }),
      10_000,
      'dead letters requeued',
    );
    await waitFor(async () => (await text('#job-queued')) === String(FAILING), 10_000, 'queued');
  });

  it('shows an experiment page with plots and a sortable trials table, and stops a running experiment for an admin only', async () => {
    await useToken(TOKENS.viewer);
    await page.goto(`${url}/#/experiment/done`);
    const trials = await withStore((s) => s.experiments.listTrials('done'));
    await waitFor(
      async () => (await text('#exp-total')) === String(trials.length),
      10_000,
      'total',
    );
    const values = trials.filter((t) => t.status === 'complete').map((t) => t.value!);
    // The best value shown with 6 significant digits.
    expect(await text('#exp-best')).toBe(String(Number(Math.min(...values).toPrecision(6))));
    await page.waitForSelector('#history-plot canvas');
    expect(await page.getAttribute('#history-plot', 'data-series')).toBe('2');
    await page.waitForSelector('#curves-plot canvas');
    // Curves of the 10 best complete trials and of the 10 latest trials.
    const best10 = trials
      .filter((t) => t.status === 'complete')
      .sort((a, b) => a.value! - b.value!)
      .slice(0, 10)
      .map((t) => t.number);
    const curves = new Set([...best10, ...trials.slice(-10).map((t) => t.number)]);
    expect(Number(await page.getAttribute('#curves-plot', 'data-series'))).toBe(curves.size);
    expect(await page.getAttribute('#parallel-plot', 'data-lines')).toBe(String(values.length));
    // The fixture's loss depends on x alone.
    await page.waitForSelector('#importance [data-param="x"]');
    expect(await page.getAttribute('#importance .imp:first-child', 'data-param')).toBe('x');
    expect(await page.locator('#trials-table tbody tr').count()).toBe(trials.length);
    await page.click('#sort-value');
    await waitFor(
      async () =>
        (await text('#trials-table tbody tr:first-child [data-field=value]')) ===
        String(Math.min(...values)),
      10_000,
      'sorted by value',
    );
    await shot('experiment');

    await page.goto(`${url}/#/experiment/waiting`);
    await page.waitForSelector('#stop:not([disabled])');
    await page.click('#stop');
    await waitFor(async () => (await text('#action-result')).includes('403'), 10_000, '403');
    expect(await withStore((s) => s.experiments.experimentStatus('waiting'))).toBe('running');
    await useToken(TOKENS.admin);
    await page.click('#stop');
    // Its scheduler winds down (its running trials stop at their next report; none has a
    // worker here, so it stays "stopping"), and the page says so.
    await waitFor(
      () =>
        withStore(async (s) => (await s.experiments.experimentStatus('waiting')) === 'stopping'),
      10_000,
      'stop requested',
    );
    await waitFor(async () => (await text('#exp-status')).startsWith('stopping'), 10_000, 'shown');
    expect(running.exitCode).toBeNull();
  });

  it("draws the timeline per worker, slice and contour plots, and a trial's detail as the store has them", async () => {
    await useToken(TOKENS.viewer);
    await page.goto(`${url}/#/experiment/done`);
    const trials = await withStore((s) => s.experiments.listTrials('done'));
    const complete = trials.filter((t) => t.status === 'complete');
    const workers = new Set(
      trials.map((t) => (t.worker ? `${t.worker.host}:${t.worker.pid}` : '')),
    );
    await page.waitForSelector('#timeline-plot[data-rows]');
    expect(await page.getAttribute('#timeline-plot', 'data-merged')).toBe('false');
    expect(await page.getAttribute('#timeline-plot', 'data-trials')).toBe(String(trials.length));
    expect(await page.getAttribute('#timeline-plot', 'data-bars')).toBe(String(trials.length));
    expect(await page.getAttribute('#timeline-plot', 'data-rows')).toBe(String(workers.size));

    // Slice and contour default to the most important params: x (the loss depends on it), then k.
    await page.waitForSelector('#slice-plot canvas');
    expect(await page.getAttribute('#slice-plot', 'data-series')).toBe('1');
    expect(await page.getAttribute('#slice-plot', 'data-param')).toBe('x');
    expect(await page.getAttribute('#slice-plot', 'data-points')).toBe(String(complete.length));
    await page.waitForSelector('#contour-plot[data-cells]');
    expect(await page.getAttribute('#contour-plot', 'data-x')).toBe('x');
    expect(await page.getAttribute('#contour-plot', 'data-y')).toBe('k');
    expect(await page.getAttribute('#contour-plot', 'data-points')).toBe(String(complete.length));
    expect(Number(await page.getAttribute('#contour-plot', 'data-cells'))).toBeGreaterThan(1);
    // A categorical param chosen in the page: one place per category.
    await page.selectOption('#slice-param', 'k');
    await waitFor(
      async () => (await page.getAttribute('#slice-plot', 'data-param')) === 'k',
      10_000,
      'slice of k',
    );
    expect(await text('#slice-info')).toContain(`${complete.length} complete trials with k`);

    // A trial's detail, reached by clicking its row: params, value, worker, reports, no logs.
    const best = complete.reduce((a, b) => (b.value! < a.value! ? b : a));
    const reports = await withStore((s) => s.experiments.reports('done', best.number));
    await page.click(`#trials-table tr[data-trial="${best.number}"]`);
    await page.waitForSelector(`#trial-detail[data-trial="${best.number}"]`);
    expect(await text('#trial-detail [data-field=value]')).toBe(String(best.value));
    expect(await text('#trial-detail [data-field=status]')).toBe('complete');
    expect(await text('#trial-detail [data-param=x]')).toBe(String(best.params.x));
    expect(await text('#trial-detail [data-param=k]')).toBe(String(best.params.k));
    expect(await text('#trial-detail [data-field=worker]')).toBe(
      `${best.worker!.host} pid ${best.worker!.pid}`,
    );
    expect(await text('#trial-detail [data-field=reports]')).toBe(String(reports.length));
    expect(await text('#trial-detail [data-field=logs]')).toContain('no trial logs');
    await page.waitForSelector('#trial-reports-plot canvas');
    expect(await page.getAttribute('#trial-reports-plot', 'data-series')).toBe('1');
    await page.selectOption('#slice-param', 'x');
    await waitFor(
      async () => (await page.getAttribute('#slice-plot', 'data-param')) === 'x',
      10_000,
      'slice of x',
    );
    await shot('experiment');
    await page.locator('#trial-detail').screenshot({ path: join(ARTIFACTS, 'trial.png') });
  });

  it('resumes an interrupted experiment for an admin only: the gateway runs its scheduler and a worker finishes it', async () => {
    const before = await withStore((s) => s.experiments.counts('resumable'));
    expect(before.total).toBe(2);
    await useToken(TOKENS.viewer);
    await page.goto(`${url}/#/experiment/resumable`);
    await page.waitForSelector('#resume:not([disabled])');
    await waitFor(
      async () => (await text('#scheduler-state')).startsWith('none attached'),
      10_000,
      'no scheduler shown',
    );
    await page.click('#resume');
    await waitFor(async () => (await text('#action-result')).includes('403'), 10_000, '403');
    await useToken(TOKENS.admin);
    await page.waitForSelector('#resume:not([disabled])');
    await page.click('#resume');
    await waitFor(
      async () => (await text('#resume-note')).includes('runs in this gateway'),
      10_000,
      'resumed',
    );
    await waitFor(
      async () => (await text('#scheduler-state')).includes('runs in this gateway'),
      10_000,
      'the gateway shown as its scheduler',
    );
    expect(await page.getAttribute('#scheduler-state', 'data-attached')).toBe('1');
    // Its workers attach as they would to `qtune experiment resume --workers 0`.
    const worker = startCli(['worker', '--experiment', resumableSpec, '--broker', env.url], {
      TRIAL_STEP_MS: '1',
    });
    children.push(worker);
    await waitFor(
      () => withStore(async (s) => (await s.experiments.experimentStatus('resumable')) === 'done'),
      60_000,
      'the resumed experiment to finish',
    );
    const after = await withStore((s) => s.experiments.counts('resumable'));
    expect(after.total).toBe(8);
    expect(after.complete).toBe(8);
    await waitFor(async () => (await text('#exp-total')) === '8', 10_000, 'trials shown');
    await waitFor(async () => (await text('#exp-status')).startsWith('done'), 10_000, 'done');
    expect(await page.isDisabled('#resume')).toBe(true);
    worker.kill('SIGTERM');
    await exited(worker);
  });

  it('compares the best-so-far curves of chosen experiments', async () => {
    await page.goto(`${url}/#/compare?names=done,resumable`);
    await page.waitForSelector('#compare-plot canvas');
    expect(await page.getAttribute('#compare-plot', 'data-series')).toBe('2');
    for (const name of ['done', 'resumable']) {
      const values = (await withStore((s) => s.experiments.listTrials(name, ['complete']))).map(
        (t) => t.value!,
      );
      // The gateway reads an experiment's trials at most once a second: within a poll or two.
      const row = `#compare-experiments tr[data-experiment="${name}"]`;
      await waitFor(
        async () =>
          (await text(`${row} [data-field=best]`)) === String(Math.min(...values)) &&
          (await text(`${row} [data-field=complete]`)) === String(values.length),
        10_000,
        `best and complete of ${name}`,
      );
    }
    await shot('compare');
    // Unticking one leaves one curve.
    await page.click('[data-choice="resumable"] input');
    await waitFor(
      async () => (await page.getAttribute('#compare-plot', 'data-series')) === '1',
      10_000,
      'one curve',
    );
    expect(page.url()).toContain('#/compare?names=done');
  });
});
