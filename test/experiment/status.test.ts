import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { experimentBest } from '../../src/experiment/best.js';
import { exportExperiment } from '../../src/experiment/export.js';
import {
  experimentOverview,
  experimentProgress,
  recordWithCounts,
} from '../../src/experiment/status.js';
import { requestStop, waitForStop } from '../../src/experiment/stop.js';
import { experimentTrials, trialRow } from '../../src/experiment/trials.js';
import { NotFoundError } from '../../src/protocol/errors.js';
import { parseExperimentSpec } from '../../src/scheduler/spec.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';

const open: { stores: SqliteStore[]; dirs: string[] } = { stores: [], dirs: [] };

afterEach(async () => {
  for (const s of open.stores.splice(0)) await s.close();
  for (const d of open.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function store(): SqliteStore {
  const dir = mkdtempSync(join(tmpdir(), 'qtune-experiment-'));
  const s = new SqliteStore({ path: join(dir, 'store.db') });
  open.dirs.push(dir);
  open.stores.push(s);
  return s;
}

const T0 = 1_700_000_000_000;

/**
 * Stores experiment `name` (maximize "acc", 5 trials) as a scheduler would have left it:
 * trial 0 complete (0.7), 1 complete (0.9, with a report), 2 pruned, 3 failed, 4 running.
 */
async function seeded(s: SqliteStore, name: string): Promise<void> {
  const spec = parseExperimentSpec({
    name,
    objective: { metric: 'acc', direction: 'maximize' },
    space: { lr: { type: 'float', low: 0, high: 1 } },
    sampler: { name: 'random', seed: 1 },
    maxTrials: 5,
  });
  await s.experiments.createExperiment(name, spec, T0);
  for (let n = 0; n < 5; n++) {
    await s.experiments.addTrial({
      experiment: name,
      number: n,
      params: { lr: n / 10 },
      taskId: `task-${n}`,
      createdAt: T0 + n,
    });
  }
  await s.experiments.markRunning(name, [0, 1, 2, 3, 4]);
  const worker = { host: 'gpu-1', pid: 7, gpus: [{ name: 'H100', memoryMiB: 81_559 }] };
  await s.experiments.recordReport(name, {
    number: 1,
    step: 1,
    value: 0.5,
    decision: 'continue',
    at: T0 + 10,
  });
  const finish = { attempt: 1, worker, startedAt: T0 + 100 };
  await s.experiments.finishTrial(name, 0, {
    ...finish,
    status: 'complete',
    value: 0.7,
    finishedAt: T0 + 60_100,
  });
  await s.experiments.finishTrial(name, 1, {
    ...finish,
    status: 'complete',
    value: 0.9,
    finishedAt: T0 + 90_100,
  });
  await s.experiments.finishTrial(name, 2, {
    ...finish,
    status: 'pruned',
    value: 0.2,
    step: 1,
    finishedAt: T0 + 110_100,
  });
  await s.experiments.finishTrial(name, 3, {
    ...finish,
    status: 'failed',
    error: 'HANDLER_FAILED: boom',
    finishedAt: T0 + 120_100,
  });
}

describe('experiment domain layer', () => {
  it('derives the status of `qtune experiment status` and the gateway record from one overview', async () => {
    const s = store();
    await seeded(s, 'mnist');
    const overview = await experimentOverview(s.experiments, 'mnist');
    expect(overview.counts).toEqual({
      pending: 0,
      running: 1,
      complete: 2,
      pruned: 1,
      failed: 1,
      total: 5,
    });
    // GET /v1/experiments/:name: the stored record with its trial counts.
    const record = await s.experiments.getExperiment('mnist');
    expect(recordWithCounts(overview)).toEqual({ ...record, trials: overview.counts });

    const progress = await experimentProgress(s.experiments, 'mnist');
    expect(progress).toEqual({
      name: 'mnist',
      status: 'running',
      objective: { metric: 'acc', direction: 'maximize' },
      maxTrials: 5,
      finished: 4,
      running: 1,
      complete: 2,
      pruned: 1,
      failed: 1,
      // 4 finished trials from the first creation (T0) to the last finish (T0 + 120100 ms).
      trialsPerMinute: 2,
      best: { number: 1, value: 0.9, params: { lr: 0.1 } },
      createdAt: T0,
      updatedAt: record!.updatedAt,
    });
  });

  it('finds the best trial in the objective direction, and none before a trial completed', async () => {
    const s = store();
    await seeded(s, 'mnist');
    const { best } = await experimentBest(s.experiments, 'mnist');
    expect(best?.number).toBe(1);

    await s.experiments.createExperiment(
      'empty',
      parseExperimentSpec({
        name: 'empty',
        space: { lr: { type: 'float', low: 0, high: 1 } },
        maxTrials: 1,
      }),
    );
    expect((await experimentBest(s.experiments, 'empty')).best).toBeUndefined();
    expect((await experimentProgress(s.experiments, 'empty')).best).toBeUndefined();
  });

  it('exports the spec and every trial as plain rows with its reports', async () => {
    const s = store();
    await seeded(s, 'mnist');
    const { spec, trials } = await experimentTrials(s.experiments, 'mnist');
    expect(trials.map((t) => t.number)).toEqual([0, 1, 2, 3, 4]);
    expect(trialRow(trials[1]!)).toEqual({
      number: 1,
      status: 'complete',
      value: 0.9,
      // The step of its last report.
      step: 1,
      params: { lr: 0.1 },
      attempt: 1,
      host: 'gpu-1',
      gpu: 'H100',
      createdAt: T0 + 1,
      startedAt: T0 + 100,
      finishedAt: T0 + 90_100,
      durationMs: 90_000,
    });
    expect(trialRow(trials[3]!).error).toBe('HANDLER_FAILED: boom');
    expect(trialRow(trials[4]!)).toMatchObject({ status: 'running', value: null, host: null });

    const exported = await exportExperiment(s.experiments, 'mnist');
    expect(exported).toMatchObject({ experiment: 'mnist', status: 'running', spec, createdAt: T0 });
    expect(exported.trials).toHaveLength(5);
    expect(exported.trials[1]!.reports).toEqual([{ step: 1, value: 0.5, at: T0 + 10 }]);
    expect(exported.trials[0]!.reports).toEqual([]);
    // Plain data: it survives a JSON round trip unchanged.
    expect(JSON.parse(JSON.stringify(exported))).toEqual(exported);
  });

  it('asks a running experiment to stop, leaves an ended one alone, and times out without a scheduler', async () => {
    const s = store();
    await seeded(s, 'mnist');
    expect(await requestStop(s.experiments, 'mnist')).toEqual({
      experiment: 'mnist',
      status: 'running',
      requested: true,
    });
    expect(await s.experiments.experimentStatus('mnist')).toBe('stopping');
    // No scheduler runs it: the request stays.
    expect(await waitForStop(s.experiments, 'mnist', { timeoutMs: 50, pollMs: 10 })).toBe(false);
    expect(await s.experiments.experimentStatus('mnist')).toBe('stopping');
    // What the scheduler does once it has wound down.
    await s.experiments.setExperimentStatus('mnist', 'stopped');
    expect(await waitForStop(s.experiments, 'mnist', { timeoutMs: 0 })).toBe(true);
    expect(await requestStop(s.experiments, 'mnist')).toEqual({
      experiment: 'mnist',
      status: 'stopped',
      requested: false,
    });
    expect(await s.experiments.experimentStatus('mnist')).toBe('stopped');
  });

  it('answers every question about an unknown experiment with NotFoundError naming the closest one', async () => {
    const s = store();
    await seeded(s, 'mnist');
    for (const ask of [
      () => experimentOverview(s.experiments, 'mnsit'),
      () => experimentProgress(s.experiments, 'mnsit'),
      () => experimentBest(s.experiments, 'mnsit'),
      () => experimentTrials(s.experiments, 'mnsit'),
      () => exportExperiment(s.experiments, 'mnsit'),
      () => requestStop(s.experiments, 'mnsit'),
    ]) {
      const err = await ask().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NotFoundError);
      expect((err as Error).message).toBe(
        'experiment "mnsit" does not exist (did you mean "mnist"?)',
      );
    }
    expect(await s.experiments.experimentStatus('mnsit')).toBeUndefined();
  });
});
