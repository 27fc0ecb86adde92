import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { MemoryBroker } from '../../src/broker/memory/index.js';
import { encode } from '../../src/protocol/codec.js';
import { createEnvelope, MessageType } from '../../src/protocol/envelope.js';
import { experimentQueues } from '../../src/protocol/trial.js';
import { Scheduler } from '../../src/scheduler/scheduler.js';
import { parseExperimentSpec } from '../../src/scheduler/spec.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { memoryBroker, takeMessages, uniqueQueue } from '../worker/helpers.js';

const open: { brokers: MemoryBroker[]; stores: SqliteStore[]; dirs: string[] } = {
  brokers: [],
  stores: [],
  dirs: [],
};

afterEach(async () => {
  for (const s of open.stores.splice(0)) await s.close();
  for (const b of open.brokers.splice(0)) await b.close();
  for (const d of open.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A report request for trial 0 of `experiment`, answered to `replyTo`. */
function report(experiment: string, step: number, replyTo: string, deadline: number): Buffer {
  return encode(
    createEnvelope({
      type: MessageType.Request,
      payload: { experiment, trial: 0, step, value: step / 10 },
      replyTo,
      deadline,
    }),
  );
}

describe('Scheduler: reports', () => {
  it('stores a report that arrives past its deadline for the pruner, and sends it no reply', async () => {
    const broker = memoryBroker();
    const dir = mkdtempSync(join(tmpdir(), 'qtune-report-'));
    const store = new SqliteStore({ path: join(dir, 'store.db') });
    open.brokers.push(broker);
    open.stores.push(store);
    open.dirs.push(dir);
    const spec = parseExperimentSpec({
      name: `late-${process.pid}`,
      space: { x: { type: 'float', low: 0, high: 1 } },
      sampler: { name: 'random', seed: 1 },
      maxTrials: 1,
      concurrency: 1,
    });
    // Trial 0 is published and in flight; no worker takes it.
    const scheduler = await Scheduler.start({ broker, store, spec, publishEvents: false });
    const q = experimentQueues(spec.name);
    const replies = uniqueQueue('replies');
    await broker.declareQueue(replies);

    await broker.publish(q.reports, [{ body: report(spec.name, 1, replies, Date.now() - 1) }]);
    await vi.waitFor(
      async () => {
        expect(await store.experiments.reports(spec.name, 0)).toHaveLength(1);
        // Acked, so whatever reply it got was sent before.
        expect(await broker.stats(q.reports)).toMatchObject({ ready: 0, inFlight: 0 });
      },
      { timeout: 5_000, interval: 10 },
    );
    expect((await broker.stats(replies)).ready).toBe(0);

    // A report in time on the same reply queue is answered, with its correlation id.
    const inTime = report(spec.name, 2, replies, Date.now() + 60_000);
    await broker.publish(q.reports, [{ body: inTime }]);
    const [reply] = await takeMessages(broker, replies, 1);
    expect(reply!.envelope).toMatchObject({
      type: 'reply',
      correlationId: JSON.parse(inTime.toString()).id,
      payload: { decision: 'continue' },
    });
    expect((await store.experiments.reports(spec.name, 0)).map((r) => r.step)).toEqual([1, 2]);
    expect((await scheduler.pause()).status).toBe('paused');
  });
});
