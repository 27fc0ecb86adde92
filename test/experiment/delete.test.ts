import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { MemoryBroker } from '../../src/broker/memory/index.js';
import { Requester } from '../../src/patterns/request-reply.js';
import { ErrorCode, InputError, NotFoundError } from '../../src/protocol/errors.js';
import { experimentQueues } from '../../src/protocol/trial.js';
import { deleteExperiment, experimentQueueNames } from '../../src/experiment/delete.js';
import { Scheduler } from '../../src/scheduler/scheduler.js';
import { parseExperimentSpec } from '../../src/scheduler/spec.js';
import { findExperiment } from '../../src/scheduler/stored.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { startWorker, type Worker } from '../../src/worker/runtime.js';
import { trialHandler } from '../../src/worker/trial/trial-handler.js';
import { memoryBroker } from '../worker/helpers.js';

const open: {
  brokers: MemoryBroker[];
  workers: Worker[];
  stores: SqliteStore[];
  requesters: Requester[];
  dirs: string[];
} = { brokers: [], workers: [], stores: [], requesters: [], dirs: [] };

afterEach(async () => {
  for (const w of open.workers.splice(0)) await w.stop({ graceMs: 0 });
  for (const r of open.requesters.splice(0)) await r.close();
  for (const s of open.stores.splice(0)) await s.close();
  for (const b of open.brokers.splice(0)) await b.close();
  for (const d of open.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function setup(): { broker: MemoryBroker; store: SqliteStore } {
  const broker = memoryBroker();
  const dir = mkdtempSync(join(tmpdir(), 'qtune-manage-'));
  const store = new SqliteStore({ path: join(dir, 'store.db') });
  open.brokers.push(broker);
  open.stores.push(store);
  open.dirs.push(dir);
  return { broker, store };
}

/** Runs experiment `name` (3 trials) to the end with one in-process worker. */
async function finished(broker: MemoryBroker, store: SqliteStore, name: string): Promise<void> {
  const spec = parseExperimentSpec({
    name,
    space: { x: { type: 'float', low: 0, high: 1 } },
    sampler: { name: 'random', seed: 1 },
    maxTrials: 3,
  });
  const scheduler = await Scheduler.start({ broker, store, spec, publishEvents: false });
  const requester = await Requester.create(broker);
  open.requesters.push(requester);
  open.workers.push(
    await startWorker({
      broker,
      queue: experimentQueues(name).trials,
      handler: trialHandler(async (t) => t.params.x as number, { requester }),
    }),
  );
  expect((await scheduler.done).status).toBe('done');
}

async function queuesOf(broker: MemoryBroker, name: string): Promise<string[]> {
  return (await broker.listQueues()).filter(
    (q) => q.startsWith(`qtune.exp.${name}.`) || q === `qtune.exp.${name}`,
  );
}

describe('deleteExperiment', () => {
  it('deletes a finished experiment from the store and its queues, dead-letter queues included, from the broker', async () => {
    const { broker, store } = setup();
    await finished(broker, store, 'gone');
    await finished(broker, store, 'kept');
    const q = experimentQueues('gone');
    await broker.declareQueue(`${q.results}.dead`);
    await broker.publish(`${q.results}.dead`, [{ body: Buffer.from('{}') }]);
    expect(await queuesOf(broker, 'gone')).toContain(`${q.results}.dead`);

    const deleted = await deleteExperiment(store.experiments, broker, 'gone');
    expect(deleted).toEqual({
      experiment: 'gone',
      status: 'done',
      trials: 3,
      queues: experimentQueueNames('gone'),
    });
    expect(await queuesOf(broker, 'gone')).toEqual([]);
    expect(await store.experiments.getExperiment('gone')).toBeUndefined();
    expect(await store.experiments.listTrials('gone')).toEqual([]);
    expect(await store.experiments.history('gone')).toEqual([]);

    expect((await store.experiments.counts('kept')).total).toBe(3);
    expect(await queuesOf(broker, 'kept')).toContain(experimentQueues('kept').trials);
  });

  it('refuses a running experiment unless forced, touching nothing', async () => {
    const { broker, store } = setup();
    await finished(broker, store, 'busy');
    await store.experiments.setExperimentStatus('busy', 'running');
    const err = await deleteExperiment(store.experiments, broker, 'busy').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(
      /experiment "busy" is running: stop it first \(`qtune experiment stop busy --wait`\), or pass --force/,
    );
    expect(await store.experiments.getExperiment('busy')).toBeDefined();
    expect(await queuesOf(broker, 'busy')).toContain(experimentQueues('busy').trials);
    expect(
      (await deleteExperiment(store.experiments, broker, 'busy', { force: true })).status,
    ).toBe('running');
    expect(await store.experiments.getExperiment('busy')).toBeUndefined();
  });

  it('answers an unknown name with NOT_FOUND and the closest existing name', async () => {
    const { broker, store } = setup();
    await finished(broker, store, 'branin');
    const err = await deleteExperiment(store.experiments, broker, 'brainn').catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as NotFoundError).code).toBe(ErrorCode.NotFound);
    expect((err as Error).message).toBe(
      'experiment "brainn" does not exist (did you mean "branin"?)',
    );
    await expect(findExperiment(store.experiments, 'zzz')).rejects.toThrow(
      /^experiment "zzz" does not exist$/,
    );
  });
});
