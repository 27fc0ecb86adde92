import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { InputError } from '../../../src/protocol/errors.js';
import type { Store } from '../../../src/store/contract.js';
import type { TrialFinish } from '../../../src/store/experiments.js';
import type { NewJob, NewJobItem } from '../../../src/store/jobs.js';
import type { ResultRow, StoredResultRow } from '../../../src/store/results.js';
import { MAX_TABLE_NAME } from '../../../src/store/results.js';

/** A name no other test uses: letters, digits and `_`, so it is also a valid table name. */
function uniqueName(label: string): string {
  return `${label}_${randomUUID().replace(/-/g, '').slice(0, 12)}`;
}

/** A result row with every required field; `fields` overrides or adds. */
function resultRow(id: string, fields: Partial<ResultRow> = {}): ResultRow {
  return {
    id,
    taskId: `task-${id}`,
    ok: true,
    value: { id },
    host: 'host-a',
    pid: 4242,
    workerId: 'host-a/4242/w1',
    attempt: 1,
    durationMs: 25,
    startedAt: 1_700_000_000_000,
    finishedAt: 1_700_000_000_025,
    ...fields,
  };
}

/** The row `getResults`/`listResults` should give back for `row` written once at `storedAt`. */
function stored(row: ResultRow, storedAt: number, writes = 1): StoredResultRow {
  return { ...row, storedAt, writes };
}

function byId<T extends { id: string }>(rows: readonly T[]): T[] {
  return [...rows].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

function job(name: string, fields: Partial<NewJob> = {}): NewJob {
  return { name, queue: name, table: name, keyFields: ['prompt'], ...fields };
}

function items(...ids: string[]): NewJobItem[] {
  return ids.map((id) => ({ id, item: { prompt: `p-${id}` }, payload: { text: `t-${id}` } }));
}

async function rejectsInput(promise: Promise<unknown>, mentions: string): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InputError);
  expect((err as Error).message).toContain(mentions);
}

/**
 * The one conformance suite of the Store contract. It uses only the contract, so it runs
 * unchanged against every implementation. `name` is the implementation's `kind`; `open` returns a new handle on the same database
 * each time it is called (two handles stand for two processes); handles are closed after each
 * test, and `cleanup` runs once after the suite. Every test uses its own names, so one
 * database can serve the whole suite.
 */
export function storeConformance(
  name: string,
  open: () => Promise<Store>,
  cleanup?: () => Promise<void> | void,
): void {
  describe(`Store conformance: ${name}`, () => {
    const handles: Store[] = [];

    /** Opens a handle that is closed after the test. */
    async function store(): Promise<Store> {
      const s = await open();
      handles.push(s);
      return s;
    }

    afterEach(async () => {
      const results = await Promise.allSettled(handles.splice(0).map((h) => h.close()));
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw new Error('closing a store handle failed', { cause: failed.reason });
    });

    afterAll(async () => {
      await cleanup?.();
    });

    it('names its kind and location', async () => {
      const s = await store();
      expect(s.kind).toBe(name);
      expect(s.location).not.toBe('');
    });

    describe('experiments', () => {
      const spec = {
        objective: { metric: 'loss', direction: 'minimize' },
        space: { lr: { type: 'float', low: 1e-5, high: 0.1, log: true }, layers: [1, 2, 3] },
        trials: 20,
        prune: null,
        resume: false,
      };

      it('creates an experiment in status running and reads it back', async () => {
        const s = await store();
        const exp = uniqueName('exp');
        const created = await s.experiments.createExperiment(exp, spec, 1000);
        const expected = { name: exp, spec, status: 'running', createdAt: 1000, updatedAt: 1000 };
        expect(created).toEqual(expected);
        expect(await s.experiments.getExperiment(exp)).toEqual(expected);
        expect(await s.experiments.getExperiment(uniqueName('missing'))).toBeUndefined();
      });

      it('rejects an experiment whose name is taken and keeps the first one', async () => {
        const s = await store();
        const exp = uniqueName('exp');
        await s.experiments.createExperiment(exp, spec, 1000);
        await rejectsInput(s.experiments.createExperiment(exp, { other: true }, 2000), exp);
        expect((await s.experiments.getExperiment(exp))?.spec).toEqual(spec);
      });

      it('lists experiments by creation time', async () => {
        const s = await store();
        const [a, b, c] = [uniqueName('exp'), uniqueName('exp'), uniqueName('exp')];
        await s.experiments.createExperiment(b, spec, 3000);
        await s.experiments.createExperiment(a, spec, 1000);
        await s.experiments.createExperiment(c, spec, 2000);
        const mine = (await s.experiments.listExperiments()).filter((e) =>
          [a, b, c].includes(e.name),
        );
        expect(mine.map((e) => e.name)).toEqual([a, c, b]);
        expect(mine.map((e) => e.createdAt)).toEqual([1000, 2000, 3000]);
      });

      it('changes an experiment status and its updatedAt', async () => {
        const s = await store();
        const exp = uniqueName('exp');
        await s.experiments.createExperiment(exp, spec, 1000);
        await s.experiments.setExperimentStatus(exp, 'stopping');
        const got = await s.experiments.getExperiment(exp);
        expect(got?.status).toBe('stopping');
        expect(got?.createdAt).toBe(1000);
        expect(got?.updatedAt).toBeGreaterThan(1000);
        await s.experiments.setExperimentStatus(exp, 'done');
        expect((await s.experiments.getExperiment(exp))?.status).toBe('done');
      });

      it("reads an experiment's status alone, and nothing for an unknown name", async () => {
        const s = await store();
        const exp = uniqueName('exp');
        await s.experiments.createExperiment(exp, spec, 1000);
        expect(await s.experiments.experimentStatus(exp)).toBe('running');
        await s.experiments.setExperimentStatus(exp, 'stopping');
        expect(await (await store()).experiments.experimentStatus(exp)).toBe('stopping');
        expect(await s.experiments.experimentStatus(uniqueName('missing'))).toBeUndefined();
      });

      it('deletes an experiment with its trials, reports and history, and nothing of another', async () => {
        const s = await store();
        const [exp, other] = [uniqueName('exp'), uniqueName('exp')];
        for (const name of [exp, other]) {
          await s.experiments.createExperiment(name, spec, 1000);
          await s.experiments.addTrial({
            experiment: name,
            number: 0,
            params: {},
            taskId: 't0',
            createdAt: 1,
          });
          await s.experiments.markRunning(name, [0]);
          await s.experiments.recordReport(name, {
            number: 0,
            step: 1,
            value: 2,
            decision: 'continue',
            at: 2,
          });
          await s.experiments.finishTrial(name, 0, { status: 'complete', value: 1, finishedAt: 3 });
        }
        expect(await s.experiments.deleteExperiment(exp)).toBe(true);
        const second = await store();
        expect(await second.experiments.getExperiment(exp)).toBeUndefined();
        expect(await second.experiments.listTrials(exp)).toEqual([]);
        expect(await second.experiments.reports(exp, 0)).toEqual([]);
        expect(await second.experiments.history(exp)).toEqual([]);
        expect((await second.experiments.counts(exp)).total).toBe(0);
        expect(await s.experiments.deleteExperiment(exp)).toBe(false);
        expect(await s.experiments.deleteExperiment(uniqueName('missing'))).toBe(false);

        expect((await s.experiments.getExperiment(other))?.name).toBe(other);
        expect((await s.experiments.listTrials(other)).map((t) => t.status)).toEqual(['complete']);
        expect(await s.experiments.reports(other, 0)).toHaveLength(1);
        expect(await s.experiments.history(other)).toHaveLength(2);

        // The name is free again: a new experiment under it starts empty.
        await s.experiments.createExperiment(exp, spec, 5000);
        expect((await s.experiments.getExperiment(exp))?.createdAt).toBe(5000);
        expect(await s.experiments.listTrials(exp)).toEqual([]);
      });

      it('adds a trial as pending once; a second add of its number changes nothing', async () => {
        const s = await store();
        const exp = uniqueName('exp');
        await s.experiments.createExperiment(exp, spec);
        const trial = { experiment: exp, number: 0, params: { lr: 0.01, opt: 'adam', bn: true } };
        expect(await s.experiments.addTrial({ ...trial, taskId: 'task-1', createdAt: 10 })).toBe(
          true,
        );
        expect(
          await s.experiments.addTrial({
            ...trial,
            params: { lr: 0.5 },
            taskId: 'task-2',
            createdAt: 20,
          }),
        ).toBe(false);
        expect(await s.experiments.getTrial(exp, 0)).toEqual({
          experiment: exp,
          number: 0,
          params: { lr: 0.01, opt: 'adam', bn: true },
          status: 'pending',
          taskId: 'task-1',
          createdAt: 10,
        });
        expect(await s.experiments.getTrial(exp, 1)).toBeUndefined();
      });

      it('marks only pending trials running and ignores unknown numbers', async () => {
        const s = await store();
        const exp = uniqueName('exp');
        await s.experiments.createExperiment(exp, spec);
        for (const n of [0, 1, 2]) {
          await s.experiments.addTrial({
            experiment: exp,
            number: n,
            params: {},
            taskId: `t${n}`,
            createdAt: n,
          });
        }
        await s.experiments.finishTrial(exp, 2, {
          status: 'failed',
          error: 'X: boom',
          finishedAt: 50,
        });
        await s.experiments.markRunning(exp, [0, 2, 99]);
        const statuses = (await s.experiments.listTrials(exp)).map((t) => [t.number, t.status]);
        expect(statuses).toEqual([
          [0, 'running'],
          [1, 'pending'],
          [2, 'failed'],
        ]);
        await s.experiments.markRunning(exp, []);
        expect((await s.experiments.getTrial(exp, 1))?.status).toBe('pending');
      });

      it('records a report once and answers a duplicate step with the first decision', async () => {
        const s = await store();
        const exp = uniqueName('exp');
        await s.experiments.createExperiment(exp, spec);
        await s.experiments.addTrial({
          experiment: exp,
          number: 0,
          params: {},
          taskId: 't0',
          createdAt: 1,
        });
        await s.experiments.markRunning(exp, [0]);
        const first = { number: 0, step: 1, value: 0.5, decision: 'continue', at: 100 };
        expect(await s.experiments.recordReport(exp, { ...first, metrics: { acc: 0.7 } })).toEqual({
          duplicate: false,
          decision: 'continue',
        });
        expect(
          await s.experiments.recordReport(exp, {
            ...first,
            value: 0.9,
            decision: 'prune',
            at: 200,
          }),
        ).toEqual({ duplicate: true, decision: 'continue' });
        expect(await s.experiments.reports(exp, 0)).toEqual([{ step: 1, value: 0.5, at: 100 }]);
        const trial = await s.experiments.getTrial(exp, 0);
        expect([trial?.step, trial?.value, trial?.startedAt]).toEqual([1, 0.5, 100]);
        expect(await s.experiments.history(exp)).toHaveLength(1);
      });

      it("sets a trial's step and value from its most recent report and keeps the first startedAt", async () => {
        const s = await store();
        const exp = uniqueName('exp');
        await s.experiments.createExperiment(exp, spec);
        await s.experiments.addTrial({
          experiment: exp,
          number: 0,
          params: {},
          taskId: 't0',
          createdAt: 1,
        });
        await s.experiments.recordReport(exp, {
          number: 0,
          step: 3,
          value: 0.3,
          decision: 'continue',
          at: 300,
        });
        await s.experiments.recordReport(exp, {
          number: 0,
          step: 1,
          value: 0.1,
          decision: 'continue',
          at: 100,
        });
        await s.experiments.recordReport(exp, {
          number: 0,
          step: 2,
          value: 0.2,
          decision: 'continue',
          at: 200,
        });
        expect(await s.experiments.reports(exp, 0)).toEqual([
          { step: 1, value: 0.1, at: 100 },
          { step: 2, value: 0.2, at: 200 },
          { step: 3, value: 0.3, at: 300 },
        ]);
        const trial = await s.experiments.getTrial(exp, 0);
        expect([trial?.step, trial?.value, trial?.startedAt]).toEqual([2, 0.2, 300]);
        expect(await s.experiments.reports(exp, 1)).toEqual([]);
      });

      it('finishes a trial once: a redelivered result changes nothing', async () => {
        const s = await store();
        const exp = uniqueName('exp');
        await s.experiments.createExperiment(exp, spec);
        await s.experiments.addTrial({
          experiment: exp,
          number: 0,
          params: {},
          taskId: 't0',
          createdAt: 1,
        });
        await s.experiments.markRunning(exp, [0]);
        const done: TrialFinish = { status: 'complete', value: 0.25, step: 10, finishedAt: 500 };
        expect(await s.experiments.finishTrial(exp, 0, done)).toBe(true);
        expect(
          await s.experiments.finishTrial(exp, 0, {
            status: 'failed',
            error: 'TIMEOUT: late',
            finishedAt: 900,
          }),
        ).toBe(false);
        const trial = await s.experiments.getTrial(exp, 0);
        expect([trial?.status, trial?.value, trial?.finishedAt, trial?.error]).toEqual([
          'complete',
          0.25,
          500,
          undefined,
        ]);
        expect((await s.experiments.history(exp)).filter((h) => h.kind === 'finish')).toHaveLength(
          1,
        );
        expect(await s.experiments.finishTrial(exp, 7, done)).toBe(false);
      });

      it('stores every field of a finished trial', async () => {
        const s = await store();
        const exp = uniqueName('exp');
        await s.experiments.createExperiment(exp, spec);
        await s.experiments.addTrial({
          experiment: exp,
          number: 3,
          params: { lr: 0.001, opt: 'sgd', nesterov: false },
          taskId: 'task-3',
          createdAt: 10,
        });
        await s.experiments.markRunning(exp, [3]);
        const worker = {
          host: 'gpu-box',
          pid: 77,
          gpus: [{ name: 'NVIDIA H100 80GB HBM3', memoryMiB: 81559 }],
        };
        await s.experiments.finishTrial(exp, 3, {
          status: 'complete',
          value: 0.125,
          step: 30,
          metrics: { acc: 0.93, curve: [1, 2, 3], nested: { ok: true } },
          attempt: 2,
          worker,
          startedAt: 20,
          finishedAt: 40,
        });
        expect(await s.experiments.getTrial(exp, 3)).toEqual({
          experiment: exp,
          number: 3,
          params: { lr: 0.001, opt: 'sgd', nesterov: false },
          status: 'complete',
          taskId: 'task-3',
          value: 0.125,
          step: 30,
          metrics: { acc: 0.93, curve: [1, 2, 3], nested: { ok: true } },
          attempt: 2,
          worker,
          createdAt: 10,
          startedAt: 20,
          finishedAt: 40,
        });
      });

      it('keeps the last reported value and step when a finish carries none', async () => {
        const s = await store();
        const exp = uniqueName('exp');
        await s.experiments.createExperiment(exp, spec);
        await s.experiments.addTrial({
          experiment: exp,
          number: 0,
          params: {},
          taskId: 't0',
          createdAt: 1,
        });
        await s.experiments.recordReport(exp, {
          number: 0,
          step: 4,
          value: 0.75,
          decision: 'prune',
          at: 40,
        });
        await s.experiments.finishTrial(exp, 0, { status: 'pruned', finishedAt: 50 });
        const trial = await s.experiments.getTrial(exp, 0);
        expect([trial?.status, trial?.step, trial?.value, trial?.startedAt]).toEqual([
          'pruned',
          4,
          0.75,
          40,
        ]);
        const last = (await s.experiments.history(exp)).at(-1);
        expect(last).toMatchObject({ kind: 'finish', status: 'pruned', step: 4, value: 0.75 });
      });

      it('returns the history of reports and finishes in the order they happened', async () => {
        const s = await store();
        const exp = uniqueName('exp');
        await s.experiments.createExperiment(exp, spec);
        for (const n of [0, 1, 2]) {
          await s.experiments.addTrial({
            experiment: exp,
            number: n,
            params: {},
            taskId: `t${n}`,
            createdAt: n,
          });
        }
        await s.experiments.recordReport(exp, {
          number: 1,
          step: 1,
          value: 0.9,
          decision: 'continue',
          at: 1,
        });
        await s.experiments.recordReport(exp, {
          number: 0,
          step: 1,
          value: 0.8,
          decision: 'continue',
          at: 2,
        });
        await s.experiments.finishTrial(exp, 1, {
          status: 'complete',
          value: 0.5,
          step: 2,
          finishedAt: 3,
        });
        await s.experiments.finishTrial(exp, 2, {
          status: 'failed',
          error: 'HANDLER_FAILED: x',
          finishedAt: 4,
        });
        await s.experiments.recordReport(exp, {
          number: 0,
          step: 2,
          value: 0.7,
          decision: 'continue',
          at: 5,
        });
        await s.experiments.recordReport(exp, {
          number: 1,
          step: 1,
          value: 0.1,
          decision: 'continue',
          at: 6,
        });
        const history = await s.experiments.history(exp);
        const withoutSeq = history.map((h) => {
          const { seq: _seq, ...rest } = h;
          return rest;
        });
        expect(withoutSeq).toEqual([
          { kind: 'report', number: 1, step: 1, value: 0.9 },
          { kind: 'report', number: 0, step: 1, value: 0.8 },
          { kind: 'finish', number: 1, status: 'complete', step: 2, value: 0.5 },
          { kind: 'finish', number: 2, status: 'failed' },
          { kind: 'report', number: 0, step: 2, value: 0.7 },
        ]);
        const seqs = history.map((h) => h.seq);
        expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
        expect(new Set(seqs).size).toBe(seqs.length);
        expect(await s.experiments.history(uniqueName('missing'))).toEqual([]);
      });

      it('counts trials by status', async () => {
        const s = await store();
        const exp = uniqueName('exp');
        await s.experiments.createExperiment(exp, spec);
        for (const n of [0, 1, 2, 3, 4, 5]) {
          await s.experiments.addTrial({
            experiment: exp,
            number: n,
            params: {},
            taskId: `t${n}`,
            createdAt: n,
          });
        }
        await s.experiments.markRunning(exp, [1, 2, 3, 4, 5]);
        await s.experiments.finishTrial(exp, 2, { status: 'complete', value: 1, finishedAt: 9 });
        await s.experiments.finishTrial(exp, 3, { status: 'complete', value: 2, finishedAt: 9 });
        await s.experiments.finishTrial(exp, 4, { status: 'pruned', finishedAt: 9 });
        await s.experiments.finishTrial(exp, 5, { status: 'failed', finishedAt: 9 });
        expect(await s.experiments.counts(exp)).toEqual({
          pending: 1,
          running: 1,
          complete: 2,
          pruned: 1,
          failed: 1,
          total: 6,
        });
        expect(await s.experiments.counts(uniqueName('missing'))).toEqual({
          pending: 0,
          running: 0,
          complete: 0,
          pruned: 0,
          failed: 0,
          total: 0,
        });
      });

      it('lists trials by number, optionally only some statuses', async () => {
        const s = await store();
        const exp = uniqueName('exp');
        const other = uniqueName('exp');
        await s.experiments.createExperiment(exp, spec);
        for (const n of [10, 2, 7, 0]) {
          await s.experiments.addTrial({
            experiment: exp,
            number: n,
            params: {},
            taskId: `t${n}`,
            createdAt: n,
          });
        }
        await s.experiments.addTrial({
          experiment: other,
          number: 1,
          params: {},
          taskId: 'o1',
          createdAt: 1,
        });
        await s.experiments.markRunning(exp, [2, 7]);
        await s.experiments.finishTrial(exp, 7, { status: 'complete', value: 1, finishedAt: 9 });
        const numbers = async (statuses?: ('pending' | 'running' | 'complete')[]) =>
          (await s.experiments.listTrials(exp, statuses)).map((t) => t.number);
        expect(await numbers()).toEqual([0, 2, 7, 10]);
        expect(await numbers(['pending'])).toEqual([0, 10]);
        expect(await numbers(['running', 'complete'])).toEqual([2, 7]);
        expect(await numbers([])).toEqual([]);
      });
    });

    describe('jobs', () => {
      it('creates a job and returns the stored one when upserted again unchanged', async () => {
        const s = await store();
        const name = uniqueName('job');
        const created = await s.jobs.upsertJob(job(name, { keyFields: ['b', 'a'] }), 1000);
        const expected = {
          name,
          queue: name,
          table: name,
          keyFields: ['b', 'a'],
          createdAt: 1000,
          updatedAt: 1000,
        };
        expect(created).toEqual(expected);
        expect(await s.jobs.upsertJob(job(name, { keyFields: ['b', 'a'] }), 2000)).toEqual(
          expected,
        );
        expect(await s.jobs.getJob(name)).toEqual(expected);
        expect((await s.jobs.listJobs()).filter((j) => j.name === name)).toEqual([expected]);
        expect(await s.jobs.getJob(uniqueName('missing'))).toBeUndefined();
      });

      it('rejects redefining a job with another queue, table or key fields', async () => {
        const s = await store();
        const name = uniqueName('job');
        await s.jobs.upsertJob(job(name), 1000);
        await rejectsInput(s.jobs.upsertJob(job(name, { queue: 'elsewhere' })), 'elsewhere');
        await rejectsInput(s.jobs.upsertJob(job(name, { table: 'other_table' })), 'other_table');
        await rejectsInput(
          s.jobs.upsertJob(job(name, { keyFields: ['prompt', 'model'] })),
          'model',
        );
        await rejectsInput(s.jobs.upsertJob(job(name, { keyFields: [] })), name);
        expect(await s.jobs.getJob(name)).toMatchObject({ queue: name, keyFields: ['prompt'] });
      });

      it('lists jobs by creation time', async () => {
        const s = await store();
        const [a, b] = [uniqueName('job'), uniqueName('job')];
        await s.jobs.upsertJob(job(b), 2000);
        await s.jobs.upsertJob(job(a), 1000);
        const mine = (await s.jobs.listJobs()).filter((j) => j.name === a || j.name === b);
        expect(mine.map((j) => j.name)).toEqual([a, b]);
      });

      it('adds new items in the given order and skips known ids, also within one call', async () => {
        const s = await store();
        const name = uniqueName('job');
        await s.jobs.upsertJob(job(name));
        const first = [
          ...items('a', 'b'),
          { id: 'a', item: { prompt: 'again' }, payload: 'ignored' },
        ];
        expect(await s.jobs.addJobItems(name, first)).toBe(2);
        expect(await s.jobs.addJobItems(name, items('c', 'b', 'd'))).toBe(2);
        expect(await s.jobs.addJobItems(name, items('a', 'd'))).toBe(0);
        expect(await s.jobs.addJobItems(name, [])).toBe(0);
        const listed = await s.jobs.listJobItems(name);
        expect(listed.map((i) => [i.id, i.seq, i.state])).toEqual([
          ['a', 1, 'new'],
          ['b', 2, 'new'],
          ['c', 3, 'new'],
          ['d', 4, 'new'],
        ]);
        expect(listed[0]).toEqual({
          id: 'a',
          seq: 1,
          item: { prompt: 'p-a' },
          payload: { text: 't-a' },
          state: 'new',
        });
      });

      it('keeps an item and its payload as given, whatever JSON they hold', async () => {
        const s = await store();
        const name = uniqueName('job');
        await s.jobs.upsertJob(job(name));
        const item = {
          prompt: 'say "hi"\n\\ ünïcödé 🚀',
          n: 1.5,
          tags: ['x', null],
          deep: { a: [{}] },
        };
        await s.jobs.addJobItems(name, [
          { id: 'obj', item, payload: { messages: [{ role: 'user', content: 'hi' }] } },
          { id: 'str', item: {}, payload: 'plain text' },
          { id: 'num', item: {}, payload: 42 },
          { id: 'arr', item: {}, payload: [1, 'two', false] },
        ]);
        const got = await s.jobs.getJobItems(name, ['obj', 'str', 'num', 'arr']);
        expect(got.map((i) => [i.item, i.payload])).toEqual([
          [item, { messages: [{ role: 'user', content: 'hi' }] }],
          [{}, 'plain text'],
          [{}, 42],
          [{}, [1, 'two', false]],
        ]);
      });

      it('keeps the items of different jobs apart', async () => {
        const s = await store();
        const [one, two] = [uniqueName('job'), uniqueName('job')];
        await s.jobs.upsertJob(job(one));
        await s.jobs.upsertJob(job(two));
        expect(await s.jobs.addJobItems(one, items('a', 'b'))).toBe(2);
        expect(await s.jobs.addJobItems(two, items('b', 'c', 'd'))).toBe(3);
        expect((await s.jobs.listJobItems(two)).map((i) => [i.id, i.seq])).toEqual([
          ['b', 1],
          ['c', 2],
          ['d', 3],
        ]);
        expect((await s.jobs.jobItemCounts(one)).total).toBe(2);
      });

      it('hands out unpublished items in order until they are marked queued', async () => {
        const s = await store();
        const name = uniqueName('job');
        await s.jobs.upsertJob(job(name));
        await s.jobs.addJobItems(name, items('a', 'b', 'c', 'd'));
        const batch = await s.jobs.unpublishedItems(name, 2);
        expect(batch.map((i) => i.id)).toEqual(['a', 'b']);
        await s.jobs.markItemsQueued(name, [
          { id: 'a', taskId: 'task-a1' },
          { id: 'b', taskId: 'task-b1' },
        ]);
        expect((await s.jobs.unpublishedItems(name, 10)).map((i) => i.id)).toEqual(['c', 'd']);
        const [a, b] = await s.jobs.getJobItems(name, ['a', 'b']);
        expect([a?.state, a?.taskId, b?.state, b?.taskId]).toEqual([
          'queued',
          'task-a1',
          'queued',
          'task-b1',
        ]);
        await s.jobs.markItemsQueued(name, [{ id: 'a', taskId: 'task-a2' }]);
        expect((await s.jobs.getJobItems(name, ['a']))[0]?.taskId).toBe('task-a2');
        await s.jobs.markItemsQueued(name, [
          { id: 'c', taskId: 'task-c1' },
          { id: 'd', taskId: 'task-d1' },
        ]);
        expect(await s.jobs.unpublishedItems(name, 10)).toEqual([]);
      });

      it('returns the items with known ids in submission order', async () => {
        const s = await store();
        const name = uniqueName('job');
        await s.jobs.upsertJob(job(name));
        await s.jobs.addJobItems(name, items('z', 'y', 'x'));
        const got = await s.jobs.getJobItems(name, ['x', 'unknown', 'z']);
        expect(got.map((i) => [i.id, i.seq])).toEqual([
          ['z', 1],
          ['x', 3],
        ]);
        expect(await s.jobs.getJobItems(name, [])).toEqual([]);
      });

      it('pages through items with afterSeq and limit', async () => {
        const s = await store();
        const name = uniqueName('job');
        await s.jobs.upsertJob(job(name));
        await s.jobs.addJobItems(name, items('a', 'b', 'c', 'd', 'e'));
        const page = async (options: { afterSeq?: number; limit?: number }) =>
          (await s.jobs.listJobItems(name, options)).map((i) => i.seq);
        expect(await page({ limit: 2 })).toEqual([1, 2]);
        expect(await page({ afterSeq: 2, limit: 2 })).toEqual([3, 4]);
        expect(await page({ afterSeq: 4, limit: 2 })).toEqual([5]);
        expect(await page({ afterSeq: 5 })).toEqual([]);
        expect(await page({})).toEqual([1, 2, 3, 4, 5]);
      });

      it('counts items by state', async () => {
        const s = await store();
        const name = uniqueName('job');
        await s.jobs.upsertJob(job(name));
        expect(await s.jobs.jobItemCounts(name)).toEqual({ total: 0, new: 0, queued: 0 });
        await s.jobs.addJobItems(name, items('a', 'b', 'c'));
        await s.jobs.markItemsQueued(name, [{ id: 'b', taskId: 'tb' }]);
        expect(await s.jobs.jobItemCounts(name)).toEqual({ total: 3, new: 2, queued: 1 });
      });
    });

    describe('result tables', () => {
      it('creates a result table, and creating it again keeps its rows', async () => {
        const s = await store();
        const table = uniqueName('results');
        expect(await s.results.hasResultTable(table)).toBe(false);
        await s.results.ensureResultTable(table);
        expect(await s.results.hasResultTable(table)).toBe(true);
        await s.results.upsertResults(table, [resultRow('r1')], 1000);
        await s.results.ensureResultTable(table);
        expect(await s.results.resultCounts(table)).toEqual({ total: 1, ok: 1, failed: 0 });
      });

      it('upsertResultChunks writes its chunks in one transaction, taking them in order', async () => {
        const s = await store();
        const table = uniqueName('chunked');
        const failed = (id: string) =>
          resultRow(id, {
            ok: false,
            value: undefined,
            errorCode: 'HANDLER_FAILED',
            errorMessage: 'boom',
          });
        const taken: number[] = [];
        function* chunks() {
          taken.push(1);
          yield [resultRow('a'), resultRow('b'), failed('a')];
          taken.push(2);
          // Repeats of a chunk before: a failure kept out, a success replacing a failure.
          yield [failed('b'), failed('c')];
          taken.push(3);
          yield [resultRow('c')];
        }
        expect(await s.results.upsertResultChunks(table, chunks())).toEqual({
          inserted: 3,
          updated: 2,
        });
        expect(taken).toEqual([1, 2, 3]);
        const rows = await s.results.listResults(table);
        expect(rows.map((r) => [r.id, r.ok, r.writes])).toEqual([
          ['a', true, 1],
          ['b', true, 1],
          ['c', true, 2],
        ]);

        // A chunk source that fails part way leaves nothing of its earlier chunks.
        function* failing() {
          yield [resultRow('d'), resultRow('e')];
          throw new Error('source broke');
        }
        await expect(s.results.upsertResultChunks(table, failing())).rejects.toThrow(
          'source broke',
        );
        expect(await s.results.resultCounts(table)).toEqual({ total: 3, ok: 3, failed: 0 });
      });

      it('rejects bad table names with an InputError naming them', async () => {
        const s = await store();
        const bad = [
          '1abc',
          'a-b',
          'a b',
          'a"b',
          'x;drop',
          'qtune_jobs',
          'QTUNE_x',
          'x'.repeat(64),
        ];
        for (const table of bad) {
          await rejectsInput(s.results.ensureResultTable(table), table);
          await rejectsInput(s.results.hasResultTable(table), table);
          await rejectsInput(s.results.upsertResults(table, [resultRow('r1')]), table);
          await rejectsInput(s.results.listResults(table), table);
        }
        await rejectsInput(s.results.ensureResultTable(''), 'table name');
      });

      it('accepts a table name of the longest allowed length', async () => {
        const s = await store();
        const table = uniqueName('t').padEnd(MAX_TABLE_NAME, 'x');
        expect(table).toHaveLength(MAX_TABLE_NAME);
        await s.results.ensureResultTable(table);
        expect(await s.results.hasResultTable(table)).toBe(true);
        expect(await s.results.upsertResults(table, [resultRow('r1')])).toEqual({
          inserted: 1,
          updated: 0,
        });
        expect(await s.results.countFinishedSince(table, 0)).toBe(1);
      });

      it('creates the table on the first upsert', async () => {
        const s = await store();
        const table = uniqueName('results');
        expect(await s.results.upsertResults(table, [resultRow('r1')])).toEqual({
          inserted: 1,
          updated: 0,
        });
        expect(await s.results.hasResultTable(table)).toBe(true);
      });

      it('reads every field of a row back as written', async () => {
        const s = await store();
        const table = uniqueName('results');
        const full = resultRow('full', {
          key: 'idem-key-1',
          value: { text: 'héllo "world"', tokens: [1, 2, 3], nested: { ok: true, none: null } },
          gpu: 'NVIDIA H100 80GB HBM3 (81559 MiB); NVIDIA H100 80GB HBM3 (81559 MiB)',
          pricePerHour: 2.49,
          attempt: 3,
          durationMs: 1234,
        });
        const failed = resultRow('failed', {
          ok: false,
          value: undefined,
          errorCode: 'HANDLER_FAILED',
          errorMessage: 'exit code 1: out of memory',
        });
        const scalar = resultRow('scalar', { value: 'just a string' });
        await s.results.upsertResults(table, [full, failed, scalar], 5000);
        const { value: _value, ...failedWithoutValue } = failed;
        expect(byId(await s.results.getResults(table, ['full', 'failed', 'scalar']))).toEqual([
          stored(failedWithoutValue, 5000),
          stored(full, 5000),
          stored(scalar, 5000),
        ]);
      });

      it('inserts new ids and replaces known ones, counting writes', async () => {
        const s = await store();
        const table = uniqueName('results');
        const a = resultRow('a');
        const b = resultRow('b', { gpu: 'GPU X', pricePerHour: 1.5, key: 'kb' });
        expect(await s.results.upsertResults(table, [a, b], 1000)).toEqual({
          inserted: 2,
          updated: 0,
        });
        const b2 = resultRow('b', {
          taskId: 'task-b-rerun',
          value: undefined,
          attempt: 2,
          finishedAt: 1_700_000_009_000,
        });
        const c = resultRow('c');
        expect(await s.results.upsertResults(table, [b2, c], 2000)).toEqual({
          inserted: 1,
          updated: 1,
        });
        const { value: _value, ...b2WithoutValue } = b2;
        expect(byId(await s.results.getResults(table, ['a', 'b', 'c']))).toEqual([
          stored(a, 1000),
          stored(b2WithoutValue, 2000, 2),
          stored(c, 2000),
        ]);
        expect(await s.results.upsertResults(table, [b2], 3000)).toEqual({
          inserted: 0,
          updated: 1,
        });
        expect((await s.results.getResults(table, ['b']))[0]?.writes).toBe(3);
        expect(await s.results.upsertResults(table, [], 4000)).toEqual({ inserted: 0, updated: 0 });
      });

      it('never replaces a successful row with a failed one, but replaces a failed row', async () => {
        const s = await store();
        const table = uniqueName('results');
        const good = resultRow('good', { taskId: 'first-run' });
        const bad = resultRow('bad', { ok: false, value: undefined, errorCode: 'TIMEOUT' });
        await s.results.upsertResults(table, [good, bad], 1000);
        const lateFailure = resultRow('good', {
          taskId: 'duplicate-run',
          ok: false,
          value: undefined,
          errorCode: 'HANDLER_FAILED',
        });
        const badAgain = { ...bad, taskId: 'retry', errorCode: 'HANDLER_FAILED' };
        expect(await s.results.upsertResults(table, [lateFailure, badAgain], 2000)).toEqual({
          inserted: 0,
          updated: 2,
        });
        let got = byId(await s.results.getResults(table, ['good', 'bad']));
        expect(got).toEqual([stored(badAgain, 2000, 2), stored(good, 1000, 1)]);
        const fixed = resultRow('bad', { taskId: 'fixed' });
        expect(await s.results.upsertResults(table, [fixed], 3000)).toEqual({
          inserted: 0,
          updated: 1,
        });
        got = await s.results.getResults(table, ['bad']);
        expect(got).toEqual([stored(fixed, 3000, 3)]);
        expect(await s.results.resultCounts(table)).toEqual({ total: 2, ok: 2, failed: 0 });
      });

      it('keeps the last row of an id repeated within one batch and counts the id once', async () => {
        const s = await store();
        const table = uniqueName('results');
        const rows = [
          resultRow('x', { taskId: 'first' }),
          resultRow('y'),
          resultRow('x', { taskId: 'last' }),
        ];
        expect(await s.results.upsertResults(table, rows, 1000)).toEqual({
          inserted: 2,
          updated: 0,
        });
        let x = (await s.results.getResults(table, ['x']))[0];
        expect([x?.taskId, x?.writes]).toEqual(['last', 1]);
        const again = [resultRow('x', { taskId: 'third' }), resultRow('x', { taskId: 'fourth' })];
        expect(await s.results.upsertResults(table, again, 2000)).toEqual({
          inserted: 0,
          updated: 1,
        });
        x = (await s.results.getResults(table, ['x']))[0];
        expect([x?.taskId, x?.writes]).toEqual(['fourth', 2]);
      });

      it('keeps a success over a later failure of the same id within one batch', async () => {
        const s = await store();
        const table = uniqueName('results');
        const success = resultRow('s', { taskId: 'run-1' });
        const lateFailure = resultRow('s', {
          taskId: 'run-2',
          ok: false,
          value: undefined,
          errorCode: 'HANDLER_FAILED',
        });
        const failure = resultRow('f', { ok: false, value: undefined, errorCode: 'TIMEOUT' });
        const laterSuccess = resultRow('f', { taskId: 'run-3' });
        expect(
          await s.results.upsertResults(table, [success, lateFailure, failure, laterSuccess], 1000),
        ).toEqual({ inserted: 2, updated: 0 });
        expect(byId(await s.results.getResults(table, ['s', 'f']))).toEqual([
          stored(laterSuccess, 1000, 1),
          stored(success, 1000, 1),
        ]);
      });

      it('returns the rows with the given ids and leaves out missing ones', async () => {
        const s = await store();
        const table = uniqueName('results');
        await s.results.upsertResults(
          table,
          ['a', 'b', 'c'].map((id) => resultRow(id)),
        );
        const got = await s.results.getResults(table, ['c', 'nope', 'a']);
        expect(got.map((r) => r.id).sort()).toEqual(['a', 'c']);
        expect(await s.results.getResults(table, [])).toEqual([]);
      });

      it('lists rows in byte order of id and pages with afterId and limit', async () => {
        const s = await store();
        const table = uniqueName('results');
        const ids = ['b', 'B', 'a', '_x', '-y', 'a1', 'A0', 'a-2', 'a_2', 'Z', 'é'];
        await s.results.upsertResults(
          table,
          ids.map((id) => resultRow(id)),
        );
        const expected = [...ids].sort(); // code-unit order, which is byte order for these ids
        expect((await s.results.listResults(table)).map((r) => r.id)).toEqual(expected);
        const pages: string[][] = [];
        let afterId: string | undefined;
        for (;;) {
          const page = await s.results.listResults(table, {
            limit: 4,
            ...(afterId ? { afterId } : {}),
          });
          if (page.length === 0) break;
          pages.push(page.map((r) => r.id));
          afterId = page.at(-1)!.id;
        }
        expect(pages).toEqual([expected.slice(0, 4), expected.slice(4, 8), expected.slice(8)]);
      });

      it('lists only successful or only failed rows when asked', async () => {
        const s = await store();
        const table = uniqueName('results');
        const rows = ['r1', 'r2', 'r3', 'r4', 'r5'].map((id, i) =>
          resultRow(id, i % 2 === 0 ? {} : { ok: false, errorCode: 'HANDLER_FAILED' }),
        );
        await s.results.upsertResults(table, rows);
        const ids = async (ok: boolean, afterId?: string) =>
          (await s.results.listResults(table, { ok, ...(afterId ? { afterId } : {}) })).map(
            (r) => r.id,
          );
        expect(await ids(true)).toEqual(['r1', 'r3', 'r5']);
        expect(await ids(false)).toEqual(['r2', 'r4']);
        expect(await ids(true, 'r1')).toEqual(['r3', 'r5']);
        expect(await s.results.listResults(table, { ok: false, limit: 1 })).toHaveLength(1);
      });

      it('counts rows by outcome and by finish time', async () => {
        const s = await store();
        const table = uniqueName('results');
        await s.results.ensureResultTable(table);
        expect(await s.results.resultCounts(table)).toEqual({ total: 0, ok: 0, failed: 0 });
        await s.results.upsertResults(table, [
          resultRow('a', { finishedAt: 100 }),
          resultRow('b', { finishedAt: 200, ok: false }),
          resultRow('c', { finishedAt: 300 }),
          resultRow('d', { finishedAt: 300, ok: false }),
        ]);
        expect(await s.results.resultCounts(table)).toEqual({ total: 4, ok: 2, failed: 2 });
        expect(await s.results.countFinishedSince(table, 0)).toBe(4);
        expect(await s.results.countFinishedSince(table, 200)).toBe(3);
        expect(await s.results.countFinishedSince(table, 201)).toBe(2);
        expect(await s.results.countFinishedSince(table, 301)).toBe(0);
      });

      it('aggregates outcomes per worker, ordered by host then worker id', async () => {
        const s = await store();
        const table = uniqueName('results');
        const w1 = { host: 'alpha', pid: 11, workerId: 'alpha/11/w' };
        const w2 = { host: 'beta', pid: 22, workerId: 'beta/22/w' };
        const w3 = {
          host: 'alpha',
          pid: 33,
          workerId: 'alpha/33/w',
          gpu: 'NVIDIA L4 (22491 MiB)',
          pricePerHour: 0.8,
        };
        await s.results.upsertResults(table, [
          resultRow('1', { ...w2, durationMs: 10, startedAt: 100, finishedAt: 110 }),
          resultRow('2', { ...w1, durationMs: 20, startedAt: 200, finishedAt: 220 }),
          resultRow('3', { ...w1, ok: false, durationMs: 5, startedAt: 150, finishedAt: 155 }),
          resultRow('4', { ...w3, durationMs: 40, startedAt: 300, finishedAt: 340 }),
          resultRow('5', { ...w3, durationMs: 60, startedAt: 400, finishedAt: 460 }),
          resultRow('6', { ...w1, durationMs: 30, startedAt: 500, finishedAt: 530 }),
        ]);
        expect(await s.results.workerStats(table)).toEqual([
          {
            ...w1,
            ok: 2,
            failed: 1,
            firstStartedAt: 150,
            lastFinishedAt: 530,
            busyMs: 55,
          },
          { ...w3, ok: 2, failed: 0, firstStartedAt: 300, lastFinishedAt: 460, busyMs: 100 },
          { ...w2, ok: 1, failed: 0, firstStartedAt: 100, lastFinishedAt: 110, busyMs: 10 },
        ]);
      });

      it('reads a table nobody wrote to as empty', async () => {
        const s = await store();
        const table = uniqueName('results');
        expect(await s.results.getResults(table, ['a'])).toEqual([]);
        expect(await s.results.listResults(table)).toEqual([]);
        expect(await s.results.resultCounts(table)).toEqual({ total: 0, ok: 0, failed: 0 });
        expect(await s.results.countFinishedSince(table, 0)).toBe(0);
        expect(await s.results.workerStats(table)).toEqual([]);
      });

      it('keeps result tables apart', async () => {
        const s = await store();
        const [one, two] = [uniqueName('results'), uniqueName('results')];
        await s.results.upsertResults(one, [resultRow('a'), resultRow('b')]);
        expect(await s.results.upsertResults(two, [resultRow('a')])).toEqual({
          inserted: 1,
          updated: 0,
        });
        expect((await s.results.resultCounts(one)).total).toBe(2);
        expect((await s.results.resultCounts(two)).total).toBe(1);
      });

      it('writes a 5,000-row batch in one call and updates it in another', async () => {
        const s = await store();
        const table = uniqueName('results');
        const rows = Array.from({ length: 5000 }, (_, i) =>
          resultRow(`row-${String(i).padStart(5, '0')}`, {
            ok: i % 10 !== 0,
            value: { i, text: `answer ${i}` },
            finishedAt: 1_000_000 + i,
          }),
        );
        expect(await s.results.upsertResults(table, rows, 1000)).toEqual({
          inserted: 5000,
          updated: 0,
        });
        expect(await s.results.resultCounts(table)).toEqual({ total: 5000, ok: 4500, failed: 500 });
        const firstPage = await s.results.listResults(table);
        expect(firstPage).toHaveLength(1000);
        expect(firstPage[999]?.id).toBe('row-00999');
        expect(await s.results.countFinishedSince(table, 1_004_000)).toBe(1000);
        expect(await s.results.upsertResults(table, rows, 2000)).toEqual({
          inserted: 0,
          updated: 5000,
        });
        const sample = await s.results.getResults(table, ['row-00000', 'row-04999']);
        expect(sample.map((r) => [r.writes, r.storedAt])).toEqual([
          [2, 2000],
          [2, 2000],
        ]);
      });
    });

    describe('several handles on one database', () => {
      it('sees the writes of another handle', async () => {
        const [a, b] = [await store(), await store()];
        const exp = uniqueName('exp');
        await a.experiments.createExperiment(exp, { n: 1 }, 1000);
        await a.experiments.addTrial({
          experiment: exp,
          number: 0,
          params: { x: 1 },
          taskId: 't0',
          createdAt: 1,
        });
        expect((await b.experiments.getExperiment(exp))?.spec).toEqual({ n: 1 });
        await rejectsInput(b.experiments.createExperiment(exp, { n: 2 }), exp);
        await b.experiments.markRunning(exp, [0]);
        await b.experiments.recordReport(exp, {
          number: 0,
          step: 1,
          value: 0.5,
          decision: 'continue',
          at: 2,
        });
        expect((await a.experiments.getTrial(exp, 0))?.status).toBe('running');
        expect(await a.experiments.history(exp)).toHaveLength(1);

        const name = uniqueName('job');
        await a.jobs.upsertJob(job(name));
        await a.jobs.addJobItems(name, items('i1', 'i2'));
        expect((await b.jobs.unpublishedItems(name, 10)).map((i) => i.id)).toEqual(['i1', 'i2']);
        expect(await b.jobs.addJobItems(name, items('i2', 'i3'))).toBe(1);
        expect((await a.jobs.jobItemCounts(name)).total).toBe(3);

        const table = uniqueName('results');
        await b.results.upsertResults(table, [resultRow('r1')], 1000);
        expect(await a.results.hasResultTable(table)).toBe(true);
        expect(await a.results.upsertResults(table, [resultRow('r1')], 2000)).toEqual({
          inserted: 0,
          updated: 1,
        });
        expect((await b.results.getResults(table, ['r1']))[0]?.writes).toBe(2);
      });

      it('answers a report sent through two handles at once with one decision', async () => {
        const [a, b] = [await store(), await store()];
        const exp = uniqueName('exp');
        await a.experiments.createExperiment(exp, {});
        await a.experiments.addTrial({
          experiment: exp,
          number: 0,
          params: {},
          taskId: 't0',
          createdAt: 1,
        });
        const report = { number: 0, step: 1, value: 0.5, at: 2 };
        const answers = await Promise.all([
          a.experiments.recordReport(exp, { ...report, decision: 'continue' }),
          b.experiments.recordReport(exp, { ...report, decision: 'prune' }),
        ]);
        expect(answers.filter((r) => !r.duplicate)).toHaveLength(1);
        expect(answers[0]!.decision).toBe(answers[1]!.decision);
        expect(await a.experiments.history(exp)).toHaveLength(1);
      });

      it('finishes a trial once when two handles finish it at once', async () => {
        const [a, b] = [await store(), await store()];
        const exp = uniqueName('exp');
        await a.experiments.createExperiment(exp, {});
        await a.experiments.addTrial({
          experiment: exp,
          number: 0,
          params: {},
          taskId: 't0',
          createdAt: 1,
        });
        const results = await Promise.all([
          a.experiments.finishTrial(exp, 0, { status: 'complete', value: 1, finishedAt: 5 }),
          b.experiments.finishTrial(exp, 0, { status: 'complete', value: 2, finishedAt: 6 }),
        ]);
        expect(results.filter(Boolean)).toHaveLength(1);
        expect(await b.experiments.history(exp)).toHaveLength(1);
      });

      it('numbers items densely when two handles add overlapping items at once', async () => {
        const [a, b] = [await store(), await store()];
        const name = uniqueName('job');
        await a.jobs.upsertJob(job(name));
        const ids = (from: number, to: number) =>
          Array.from({ length: to - from }, (_, i) => `item-${from + i}`);
        const added = await Promise.all([
          a.jobs.addJobItems(name, items(...ids(0, 300))),
          b.jobs.addJobItems(name, items(...ids(200, 500))),
        ]);
        expect(added[0]! + added[1]!).toBe(500);
        const listed = await a.jobs.listJobItems(name, { limit: 1000 });
        expect(listed.map((i) => i.seq)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
        expect(new Set(listed.map((i) => i.id)).size).toBe(500);
      });

      it('counts every id once when two handles upsert overlapping batches at once', async () => {
        const [a, b] = [await store(), await store()];
        const table = uniqueName('results');
        await a.results.ensureResultTable(table);
        const rows = (from: number, to: number) =>
          Array.from({ length: to - from }, (_, i) => resultRow(`r${from + i}`));
        const [ra, rb] = await Promise.all([
          a.results.upsertResults(table, rows(0, 600)),
          b.results.upsertResults(table, [...rows(300, 900)].reverse()),
        ]);
        expect(ra.inserted + rb.inserted).toBe(900);
        expect(ra.updated + rb.updated).toBe(300);
        const twice = await a.results.getResults(table, ['r300', 'r599']);
        expect(twice.map((r) => r.writes)).toEqual([2, 2]);
        expect(await b.results.resultCounts(table)).toEqual({ total: 900, ok: 900, failed: 0 });
      });
    });
  });
}
