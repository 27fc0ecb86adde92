import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { MemoryBroker } from '../../src/broker/memory/index.js';
import { Requester } from '../../src/patterns/request-reply.js';
import { subscribeEvents } from '../../src/patterns/pubsub.js';
import { publishResult } from '../../src/patterns/work-queue.js';
import { encode } from '../../src/protocol/codec.js';
import { createEnvelope, MessageType } from '../../src/protocol/envelope.js';
import type { WorkerInfo } from '../../src/protocol/result.js';
import { experimentQueues } from '../../src/protocol/trial.js';
import { Scheduler, type TrialEvent } from '../../src/scheduler/scheduler.js';
import { parseExperimentSpec, type ExperimentSpecInput } from '../../src/scheduler/spec.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { startWorker, type Worker } from '../../src/worker/runtime.js';
import { trialHandler, type TrialRun } from '../../src/worker/trial/trial-handler.js';
import { WAIT_MS, waitFor } from '../support/wait.js';
import { memoryBroker, takeMessages } from '../worker/helpers.js';

const hostInfo: WorkerInfo = { host: 'test-host', pid: 4242, id: 'test-host:4242:abcd' };
const open: {
  brokers: MemoryBroker[];
  workers: Worker[];
  stores: SqliteStore[];
  dirs: string[];
  requesters: Requester[];
} = {
  brokers: [],
  workers: [],
  stores: [],
  dirs: [],
  requesters: [],
};

afterEach(async () => {
  for (const w of open.workers.splice(0)) await w.stop({ graceMs: 0 });
  for (const r of open.requesters.splice(0)) await r.close();
  for (const s of open.stores.splice(0)) await s.close();
  for (const b of open.brokers.splice(0)) await b.close();
  for (const d of open.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(): { broker: MemoryBroker; store: SqliteStore; storePath: string } {
  const broker = memoryBroker();
  const dir = mkdtempSync(join(tmpdir(), 'qtune-sched-'));
  const storePath = join(dir, 'experiments.db');
  const store = new SqliteStore({ path: storePath });
  open.brokers.push(broker);
  open.stores.push(store);
  open.dirs.push(dir);
  return { broker, store, storePath };
}

function spec(overrides: Partial<ExperimentSpecInput> = {}) {
  return parseExperimentSpec({
    name: `exp-${Math.random().toString(36).slice(2, 8)}`,
    space: { x: { type: 'float', low: -5, high: 5 }, y: { type: 'int', low: 0, high: 10 } },
    sampler: { name: 'random', seed: 1 },
    maxTrials: 20,
    concurrency: 4,
    maxRetries: 1,
    ...overrides,
  });
}

async function worker(
  broker: MemoryBroker,
  experiment: string,
  run: TrialRun,
  concurrency = 4,
): Promise<Worker> {
  const requester = await Requester.create(broker);
  open.requesters.push(requester);
  const w = await startWorker({
    broker,
    queue: experimentQueues(experiment).trials,
    handler: trialHandler(run, { requester, reportTimeoutMs: 2000 }),
    concurrency,
    hostInfo,
    maxAttempts: 2,
    backoff: { baseMs: 5, maxMs: 5, jitter: 0 },
  });
  open.workers.push(w);
  return w;
}

const quadratic: TrialRun = async (trial) => {
  const x = trial.params.x as number;
  const y = trial.params.y as number;
  return { value: (x - 1) ** 2 + (y - 3) ** 2 };
};

describe('Scheduler', () => {
  it('runs exactly maxTrials trials and records the best', async () => {
    const { broker, store } = setup();
    const s = spec();
    const scheduler = await Scheduler.start({ broker, store, spec: s });
    await worker(broker, s.name, quadratic);
    const summary = await scheduler.done;
    expect(summary.status).toBe('done');
    expect(summary.counts).toMatchObject({
      complete: 20,
      pruned: 0,
      failed: 0,
      running: 0,
      pending: 0,
      total: 20,
    });
    const trials = await store.experiments.listTrials(s.name);
    expect(trials.map((t) => t.number)).toEqual([...Array(20).keys()]);
    const min = Math.min(...trials.map((t) => t.value!));
    expect(summary.best?.value).toBe(min);
    expect(trials.every((t) => t.worker?.host === 'test-host' && t.attempt === 1)).toBe(true);
    expect((await store.experiments.getExperiment(s.name))?.status).toBe('done');
  });

  it('publishes trial lifecycle events on the experiment topic', async () => {
    const { broker, store } = setup();
    const s = spec({ maxTrials: 4, concurrency: 2 });
    const seen: { topic: string; e: TrialEvent }[] = [];
    const sub = await subscribeEvents<TrialEvent>(
      broker,
      `qtune.experiment.${s.name}.trial.#`,
      (e, topic) => {
        seen.push({ topic, e });
      },
    );
    const scheduler = await Scheduler.start({ broker, store, spec: s });
    await worker(broker, s.name, async (t) => {
      await t.report(1, 5);
      return t.number === 1 ? Promise.reject(new Error('boom')) : 1;
    });
    await scheduler.done;
    await vi.waitFor(() => expect(seen.filter((x) => x.topic.endsWith('.failed'))).toHaveLength(1));
    await sub.cancel();
    const kinds = (n: number) =>
      seen.filter((x) => x.e.number === n).map((x) => x.topic.split('.').at(-1));
    expect(kinds(0)).toEqual(['started', 'reported', 'completed']);
    expect(kinds(1)).toContain('failed');
    expect(seen.find((x) => x.topic.endsWith('.started'))?.e.params).toBeDefined();
    expect(seen.find((x) => x.topic.endsWith('.failed'))?.e.error).toMatch(/boom/);
  });

  it('keeps at most `concurrency` trials in flight', async () => {
    const { broker, store } = setup();
    const s = spec({ concurrency: 3, maxTrials: 12 });
    let running = 0;
    let most = 0;
    const scheduler = await Scheduler.start({ broker, store, spec: s });
    await worker(
      broker,
      s.name,
      async (trial) => {
        running++;
        most = Math.max(most, running);
        await new Promise((r) => setTimeout(r, 10));
        running--;
        return trial.number;
      },
      8,
    );
    await scheduler.done;
    expect(most).toBe(3);
  });

  it('finds the maximum when the objective is maximized', async () => {
    const { broker, store } = setup();
    const s = spec({ objective: { metric: 'acc', direction: 'maximize' } });
    const scheduler = await Scheduler.start({ broker, store, spec: s });
    await worker(broker, s.name, async (trial) => ({ acc: -((trial.params.x as number) ** 2) }));
    const summary = await scheduler.done;
    const values = (await store.experiments.listTrials(s.name)).map((t) => t.value!);
    expect(summary.best?.value).toBe(Math.max(...values));
  });

  it('prunes trials through reports, records their last step, and frees the worker', async () => {
    const { broker, store } = setup();
    const s = spec({
      maxTrials: 24,
      concurrency: 2,
      pruner: { name: 'median', options: { startupTrials: 2, warmupSteps: 0 } },
      budget: { maxSteps: 10 },
    });
    const scheduler = await Scheduler.start({ broker, store, spec: s });
    await worker(broker, s.name, async (trial) => {
      const x = trial.params.x as number;
      let v = 0;
      for (let step = 1; step <= trial.maxSteps!; step++) {
        v = x * x + 1 / step;
        if (await trial.report(step, { value: v })) return { value: v };
      }
      return { value: v };
    });
    const summary = await scheduler.done;
    expect(summary.counts.complete + summary.counts.pruned).toBe(24);
    expect(summary.counts.pruned).toBeGreaterThan(0);
    const pruned = await store.experiments.listTrials(s.name, ['pruned']);
    for (const t of pruned) {
      expect(t.step).toBeGreaterThanOrEqual(1);
      expect(t.step).toBeLessThan(10);
      const reports = await store.experiments.reports(s.name, t.number);
      expect(reports.at(-1)?.step).toBe(t.step);
      expect(reports.at(-1)?.value).toBe(t.value);
    }
  });

  it('marks a trial failed with its reason after its retries, and goes on', async () => {
    const { broker, store } = setup();
    const s = spec({ maxTrials: 6, concurrency: 2 });
    let calls = 0;
    const scheduler = await Scheduler.start({ broker, store, spec: s });
    await worker(broker, s.name, async (trial) => {
      calls++;
      if (trial.number === 2) throw new Error('CUDA out of memory');
      return 1;
    });
    const summary = await scheduler.done;
    expect(summary.counts).toMatchObject({ complete: 5, failed: 1 });
    const failed = await store.experiments.getTrial(s.name, 2);
    expect(failed?.status).toBe('failed');
    expect(failed?.error).toContain('CUDA out of memory');
    expect(calls).toBe(5 + 2);
  });

  it('stops a trial past its time budget and marks it failed with TIMEOUT', async () => {
    const { broker, store } = setup();
    const s = spec({ maxTrials: 3, concurrency: 3, trialTimeout: 100 });
    const scheduler = await Scheduler.start({ broker, store, spec: s });
    await worker(broker, s.name, async (trial) => {
      if (trial.number === 1) {
        await new Promise((resolve) => trial.signal.addEventListener('abort', resolve));
      }
      return 0;
    });
    const summary = await scheduler.done;
    expect(summary.counts).toMatchObject({ complete: 2, failed: 1 });
    expect((await store.experiments.getTrial(s.name, 1))?.error).toMatch(/^TIMEOUT: .*time budget/);
  });

  it('counts a redelivered result once', async () => {
    const { broker, store } = setup();
    const s = spec({ maxTrials: 5, concurrency: 1 });
    const scheduler = await Scheduler.start({ broker, store, spec: s });
    const q = experimentQueues(s.name);
    // Play the worker by hand: answer trial 0 twice.
    const [task] = await takeMessages(broker, q.trials, 1);
    const result = {
      taskId: task!.envelope.id,
      key: task!.envelope.key!,
      ok: true,
      value: { state: 'complete', value: 7 },
      worker: hostInfo,
      startedAt: Date.now(),
      finishedAt: Date.now(),
      durationMs: 0,
      attempt: 1,
    };
    await publishResult(broker, q.results, [result, result]);
    await worker(broker, s.name, async () => 3);
    const summary = await scheduler.done;
    expect(summary.counts.total).toBe(5);
    expect(summary.counts.complete).toBe(5);
    const history = (await store.experiments.history(s.name)).filter((h) => h.kind === 'finish');
    expect(history.map((h) => h.number).sort()).toEqual([0, 1, 2, 3, 4]);
    expect((await store.experiments.getTrial(s.name, 0))?.value).toBe(7);
  });

  it('resumes after a pause with exactly maxTrials finished trials and the same sampler stream', async () => {
    const { broker, store } = setup();
    const s = spec({ maxTrials: 30, concurrency: 3 });
    const first = await Scheduler.start({ broker, store, spec: s });
    const w = await worker(broker, s.name, async (t) => {
      await new Promise((r) => setTimeout(r, 5));
      return quadratic(t, undefined as never);
    });
    await new Promise<void>((resolve) => {
      let n = 0;
      first.on('trial:completed', () => {
        if (++n === 10) resolve();
      });
    });
    const paused = await first.pause();
    expect(paused.status).toBe('paused');
    expect((await store.experiments.getExperiment(s.name))?.status).toBe('running');
    const second = await Scheduler.start({ broker, store, resume: s.name });
    const summary = await second.done;
    expect(summary.status).toBe('done');
    expect(summary.counts).toMatchObject({ complete: 30, total: 30, running: 0, pending: 0 });
    const finishes = (await store.experiments.history(s.name)).filter((h) => h.kind === 'finish');
    expect(finishes).toHaveLength(30);
    expect(new Set(finishes.map((h) => h.number)).size).toBe(30);
    // Random search draws trial n from its own stream: the resumed run proposed what an
    // uninterrupted one would have.
    const { RandomSampler } = await import('../../src/automl/samplers/random.js');
    const { SearchSpace } = await import('../../src/automl/space.js');
    const reference = new RandomSampler(SearchSpace.parse(s.space), { seed: 1 });
    for (const t of await store.experiments.listTrials(s.name))
      expect(t.params).toEqual(reference.suggest(t.number, []));
    await w.stop({ graceMs: 0 });
  });

  it('stops when asked through the store: no new trials, status stopped, resumable', async () => {
    const { broker, store } = setup();
    const s = spec({ maxTrials: 1000, concurrency: 2 });
    const scheduler = await Scheduler.start({ broker, store, spec: s, stopPollMs: 20 });
    await worker(broker, s.name, async () => {
      await new Promise((r) => setTimeout(r, 5));
      return 1;
    });
    await new Promise((r) => setTimeout(r, 100));
    await store.experiments.setExperimentStatus(s.name, 'stopping');
    const summary = await scheduler.done;
    expect(summary.status).toBe('stopped');
    expect(summary.counts.total).toBeLessThan(1000);
    expect(summary.counts.running + summary.counts.pending).toBe(0);
    expect((await store.experiments.getExperiment(s.name))?.status).toBe('stopped');
  });

  it('ends early when a grid is exhausted', async () => {
    const { broker, store } = setup();
    const s = spec({
      space: {
        a: { type: 'categorical', choices: ['p', 'q', 'r'] },
        b: { type: 'int', low: 1, high: 2 },
      },
      sampler: { name: 'grid' },
      maxTrials: 100,
    });
    const scheduler = await Scheduler.start({ broker, store, spec: s });
    await worker(broker, s.name, async () => 0);
    const summary = await scheduler.done;
    expect(summary.status).toBe('done');
    expect(summary.counts.total).toBe(6);
    const combos = (await store.experiments.listTrials(s.name))
      .map((t) => `${String(t.params.a)}${String(t.params.b)}`)
      .sort();
    expect(combos).toEqual(['p1', 'p2', 'q1', 'q2', 'r1', 'r2']);
  });

  it('dead-letters a malformed report and answers a report for an unknown trial with stop', async () => {
    const { broker, store } = setup();
    const s = spec({ maxTrials: 1, concurrency: 1 });
    const scheduler = await Scheduler.start({ broker, store, spec: s });
    const q = experimentQueues(s.name);
    await broker.publish(q.reports, [
      {
        body: encode(
          createEnvelope({
            type: MessageType.Request,
            payload: { experiment: s.name, trial: 'x' },
          }),
        ),
      },
    ]);
    const dead = await takeMessages(broker, `${q.reports}.dead`, 1);
    expect(String(dead[0]!.headers['x-qtune-dead-reason'])).toMatch(/payload\.trial/);
    const requester = await Requester.create(broker);
    open.requesters.push(requester);
    const reply = await requester.request(q.reports, {
      experiment: s.name,
      trial: 99,
      step: 1,
      value: 0,
    });
    expect(reply).toEqual({ decision: 'stop' });
    await worker(broker, s.name, async () => 0);
    await scheduler.done;
  });

  it('stores nothing when the sampler or pruner rejects the spec, so the fixed spec then runs', async () => {
    const { broker, store } = setup();
    const name = `exp-${Math.random().toString(36).slice(2, 8)}`;
    const space: ExperimentSpecInput['space'] = {
      x: { type: 'float', low: -5, high: 5 },
      k: { type: 'categorical', choices: ['a', 'b'] },
    };
    await expect(
      Scheduler.start({
        broker,
        store,
        spec: spec({ name, space, sampler: { name: 'cmaes' }, maxTrials: 2 }),
      }),
    ).rejects.toThrow(
      /CMA-ES needs float or int parameters without conditions; "k" is categorical/,
    );
    await expect(
      Scheduler.start({
        broker,
        store,
        spec: spec({ name, space, pruner: { name: 'hyperband' }, maxTrials: 2 }),
      }),
    ).rejects.toThrow(/needs maxResource/);
    expect(await store.experiments.getExperiment(name)).toBeUndefined();
    expect(await store.experiments.listExperiments()).toEqual([]);

    const fixed = spec({ name, space, sampler: { name: 'random', seed: 1 }, maxTrials: 2 });
    const scheduler = await Scheduler.start({ broker, store, spec: fixed });
    await worker(broker, name, async () => 1);
    expect((await scheduler.done).status).toBe('done');
  });

  it('leaves a stored experiment untouched when its stored spec no longer builds on resume', async () => {
    const { broker, store } = setup();
    const name = `exp-${Math.random().toString(36).slice(2, 8)}`;
    const bad = { ...spec({ name, maxTrials: 2 }), sampler: { name: 'cmaes', options: {} } };
    await store.experiments.createExperiment(name, {
      ...bad,
      space: { k: { type: 'categorical', choices: [1, 2] } },
    });
    await store.experiments.setExperimentStatus(name, 'stopped');
    await expect(Scheduler.start({ broker, store, resume: name })).rejects.toThrow(/CMA-ES/);
    expect((await store.experiments.getExperiment(name))?.status).toBe('stopped');
  });

  it('reads only the experiment status on its stop polls, never the stored spec again', async () => {
    const { broker, store } = setup();
    const calls = { getExperiment: 0, experimentStatus: 0 };
    const experiments = new Proxy(store.experiments, {
      get(target, prop) {
        if (prop === 'getExperiment' || prop === 'experimentStatus') calls[prop]++;
        const value: unknown = Reflect.get(target, prop);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const counted = new Proxy(store, {
      get: (target, prop, receiver) =>
        prop === 'experiments' ? experiments : Reflect.get(target, prop, receiver),
    });
    const s = spec({ maxTrials: 1 });
    const scheduler = await Scheduler.start({ broker, store: counted, spec: s, stopPollMs: 5 });
    const atStart = calls.getExperiment;
    await worker(broker, s.name, async () => {
      await waitFor(() => calls.experimentStatus >= 5, WAIT_MS, 'five status reads');
      return 1;
    });
    expect((await scheduler.done).status).toBe('done');
    expect(calls.experimentStatus).toBeGreaterThanOrEqual(5);
    expect(calls.getExperiment).toBe(atStart);
  });

  it('refuses to create an experiment whose name exists, and to resume one that does not', async () => {
    const { broker, store } = setup();
    const s = spec({ maxTrials: 1 });
    const scheduler = await Scheduler.start({ broker, store, spec: s });
    await expect(Scheduler.start({ broker, store, spec: s })).rejects.toThrow(
      /already exists.*resume/,
    );
    await expect(Scheduler.start({ broker, store, resume: 'nope' })).rejects.toThrow(
      /"nope" does not exist/,
    );
    await worker(broker, s.name, async () => 0);
    await scheduler.done;
  });
});
