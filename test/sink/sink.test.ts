import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedBroker } from '../../src/broker/embedded/index.js';
import { deadLetterQueueOf } from '../../src/broker/contract.js';
import { deadLetterView, type DeadLetterView } from '../../src/patterns/dead-letters.js';
import { resultMessage, resultQueueOf } from '../../src/patterns/work-queue.js';
import type { TaskResult } from '../../src/protocol/result.js';
import * as fromSource from '../../src/sink/sink.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { assertBuilt, ROOT } from '../cli/helpers.js';
import { waitFor } from '../support/wait.js';

/** The dead letters of `queue`, read and left in place. */
async function deadLetters(broker: EmbeddedBroker, queue: string, n: number) {
  const seen = new Map<string, DeadLetterView>();
  const held: Array<{ release(): Promise<void> }> = [];
  const consumer = await broker.consume(deadLetterQueueOf(queue), async (d) => {
    seen.set(d.id, deadLetterView(d, queue));
    held.push(d);
  });
  await waitFor(() => seen.size >= n, 10_000, `${n} dead letters of "${queue}"`);
  await consumer.cancel();
  await Promise.all(held.map((d) => d.release()));
  return [...seen.values()];
}

type SinkModule = typeof fromSource;
let fromBuild: SinkModule & { writerThreadAvailable(): boolean };

beforeAll(async () => {
  assertBuilt();
  fromBuild = (await import(join(ROOT, 'dist/sink/index.js'))) as typeof fromBuild;
});

let dir: string;
const opened: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const o of opened.splice(0).reverse()) await o.close();
  rmSync(dir, { recursive: true, force: true });
});

function result(i: number, ok = true, attempt = 1): TaskResult {
  return {
    taskId: `task-${i}-${attempt}`,
    key: `key-${i}`,
    ok,
    ...(ok
      ? { value: { name: `company ${i}`, n: i } }
      : { error: { code: 'HANDLER_FAILED', message: `boom ${i}` } }),
    worker: {
      host: 'gpu-box-1',
      pid: 42,
      id: 'w1',
      gpus: [{ name: 'NVIDIA L4', memoryMiB: 23034 }],
    },
    startedAt: 1_000,
    finishedAt: 1_005,
    durationMs: 5,
    attempt,
  } as TaskResult;
}

const writers: Array<[string, () => SinkModule, { thread?: boolean }]> = [
  ['on the main thread', () => fromSource, { thread: false }],
  ['on the writer thread', () => fromBuild, {}],
];

describe.each(writers)('Sink writing %s', (_, sinkModule, options) => {
  async function setup() {
    dir = mkdtempSync(join(tmpdir(), 'qtune-sink-'));
    const broker = await EmbeddedBroker.open({ path: join(dir, 'broker.db') });
    const store = new SqliteStore({ path: join(dir, 'store.db') });
    opened.push(broker, store);
    await broker.declareQueue(resultQueueOf('items'));
    return { broker, store };
  }

  function start(broker: EmbeddedBroker, store: SqliteStore, extra = {}) {
    return sinkModule().Sink.start({
      broker,
      store,
      queue: 'items',
      table: 'rows',
      batchSize: 50,
      ...options,
      ...extra,
    });
  }

  async function drain(broker: EmbeddedBroker, store: SqliteStore, expected: number, extra = {}) {
    const sink = await start(broker, store, extra);
    await waitFor(
      () => sink.stats.stored + sink.stats.invalid >= expected,
      20_000,
      `${expected} results stored or set aside`,
    );
    await sink.stop();
    return sink;
  }

  it('stores each result once, updates rows of re-run results, and dead-letters the garbage with its reason', async () => {
    const { broker, store } = await setup();
    const q = resultQueueOf('items');
    // Failed first, then a success for the same items: the success replaces the failure.
    await broker.publish(
      q,
      [0, 1, 2].map((i) => resultMessage(result(i, false))),
    );
    const first = await drain(broker, store, 3);
    expect(first.stats).toMatchObject({ stored: 3, inserted: 3, updated: 0 });
    expect(await store.results.resultCounts('rows')).toEqual({ total: 3, ok: 0, failed: 3 });

    const msgs = [];
    for (let i = 0; i < 300; i++) {
      msgs.push(resultMessage(result(i, true, i < 3 ? 2 : 1)));
      if (i === 10) msgs.push({ body: 'not json at all' });
      if (i === 120)
        msgs.push({ body: JSON.stringify({ qtune: 1, id: 'x', type: 'task', payload: {} }) });
      if (i === 200)
        msgs.push(resultMessage({ ...result(999), worker: undefined } as unknown as TaskResult));
    }
    // A redelivered result, in a later batch: the same row again.
    msgs.push(resultMessage(result(7)));
    await broker.publish(q, msgs);

    const sink = await drain(broker, store, 304);
    expect(sink.stats).toMatchObject({ stored: 301, invalid: 3, inserted: 297, failedWrites: 0 });
    expect(sink.stats.updated).toBe(4);
    const counts = await store.results.resultCounts('rows');
    expect(counts).toEqual({ total: 300, ok: 300, failed: 0 });
    const [row0, row7] = await store.results.getResults('rows', ['key-0', 'key-7']);
    expect(row0).toMatchObject({ ok: true, attempt: 2, value: { name: 'company 0', n: 0 } });
    expect(row0!.writes).toBe(2);
    expect(row7).toMatchObject({ ok: true, gpu: 'NVIDIA L4 (23034 MiB)', durationMs: 5 });
    expect(row7!.writes).toBe(2);

    const left = await broker.stats(q);
    expect(left.ready + left.inFlight + left.delayed).toBe(0);
    expect(left.deadLettered).toBe(3);
    const dead = await deadLetters(broker, q, 3);
    const reasons = dead.map((d) => d.reason).sort();
    expect(reasons).toHaveLength(3);
    expect(reasons[0]).toMatch(/^INVALID_ENVELOPE: .*has type "task", expected "result"/);
    expect(reasons[1]).toMatch(/^INVALID_ENVELOPE: .*invalid at "payload\.worker"/);
    expect(reasons[2]).toMatch(/^MALFORMED_JSON: /);
  });

  it('writes a batch of many chunks: every garbage message dead-lettered by its own index, and a late failure never replaces a success', async () => {
    const { broker, store } = await setup();
    const q = resultQueueOf('items');
    const msgs = [];
    for (let i = 0; i < 1400; i++) {
      msgs.push(resultMessage(result(i)));
      // Garbage in the first chunk, the middle of the batch and near its end.
      if (i === 3 || i === 700 || i === 1390) msgs.push({ body: `garbage after ${i}` });
    }
    // Later in the same batch, chunks away from their first rows: a failure of item 5 (kept
    // out by its success) and a second success of item 9 (replaces the first).
    msgs.push(resultMessage(result(5, false, 2)), resultMessage(result(9, true, 2)));
    await broker.publish(q, msgs);

    const sink = await drain(broker, store, msgs.length, { batchSize: 2000, flushMs: 2000 });
    expect(sink.stats).toMatchObject({ stored: 1402, invalid: 3, failedWrites: 0, batches: 1 });
    expect(await store.results.resultCounts('rows')).toEqual({ total: 1400, ok: 1400, failed: 0 });
    const [row5, row9] = await store.results.getResults('rows', ['key-5', 'key-9']);
    expect(row5).toMatchObject({ ok: true, attempt: 1, value: { name: 'company 5', n: 5 } });
    expect(row9).toMatchObject({ ok: true, attempt: 2 });
    // The dead letters are the garbage itself, not results next to it.
    const dead = await deadLetters(broker, q, 3);
    expect(dead.map((d) => d.body).sort()).toEqual([
      'garbage after 1390',
      'garbage after 3',
      'garbage after 700',
    ]);
    expect(dead.every((d) => d.reason.startsWith('MALFORMED_JSON: '))).toBe(true);
    const left = await broker.stats(q);
    expect(left.ready + left.inFlight + left.delayed).toBe(0);
  });

  it('a write that fails part way through a batch stores none of it, and the batch is stored once when the store works again', async () => {
    const { broker, store } = await setup();
    const q = resultQueueOf('items');
    await store.results.ensureResultTable('rows');
    // The store refuses one row in the batch's third chunk of 512, after two chunks were upserted.
    const db = new Database(join(dir, 'store.db'));
    db.exec(`CREATE TRIGGER boom BEFORE INSERT ON rows WHEN NEW.id = 'key-1200'
             BEGIN SELECT RAISE(ABORT, 'disk on fire'); END`);
    await broker.publish(
      q,
      Array.from({ length: 1400 }, (_, i) => resultMessage(result(i))),
    );
    const sink = await start(broker, store, {
      batchSize: 2000,
      flushMs: 2000,
      retryDelayMs: 100,
    });
    const errors: Error[] = [];
    sink.on('error', (e) => errors.push(e));
    await waitFor(() => sink.stats.failedWrites >= 2, 20_000, 'two failed writes');
    expect(sink.stats.failedWrites).toBeGreaterThanOrEqual(2);
    expect(errors[0]?.message).toMatch(/disk on fire/);
    expect(await store.results.resultCounts('rows')).toEqual({ total: 0, ok: 0, failed: 0 });

    db.exec('DROP TRIGGER boom');
    db.close();
    await waitFor(() => sink.stats.stored >= 1400, 20_000, '1400 results stored');
    await sink.stop();
    expect(await store.results.resultCounts('rows')).toEqual({ total: 1400, ok: 1400, failed: 0 });
    const rows = await store.results.listResults('rows', { limit: 2000 });
    expect(rows.filter((r) => r.writes !== 1)).toEqual([]);
    const left = await broker.stats(q);
    expect(left.ready + left.inFlight + left.delayed + left.deadLettered).toBe(0);
  });

  it('keys rows by the named fields of the value', async () => {
    const { broker, store } = await setup();
    const q = resultQueueOf('items');
    // Two tasks whose values name the same company: one row.
    await broker.publish(q, [resultMessage(result(1))]);
    expect((await drain(broker, store, 1, { keyFields: ['name'] })).stats).toMatchObject({
      stored: 1,
      inserted: 1,
    });
    await broker.publish(q, [resultMessage({ ...result(1), taskId: 'other', key: 'k2' })]);
    expect((await drain(broker, store, 1, { keyFields: ['name'] })).stats).toMatchObject({
      stored: 1,
      inserted: 0,
      updated: 1,
    });
    const rows = await store.results.listResults('rows');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ taskId: 'other', key: 'k2', writes: 2 });
  });

  it('writes a batch that stopped growing without waiting for flushMs', async () => {
    const { broker, store } = await setup();
    await broker.publish(
      resultQueueOf('items'),
      [0, 1, 2].map((i) => resultMessage(result(i))),
    );
    // A batch of 50 that never fills and a flushMs of a minute: only the idle flush writes it.
    const sink = await start(broker, store, { flushMs: 60_000 });
    await waitFor(() => sink.stats.stored >= 3, 20_000, 'three results stored');
    expect(sink.stats).toMatchObject({ stored: 3, batches: 1 });
    await sink.stop();
    expect(await store.results.resultCounts('rows')).toEqual({ total: 3, ok: 3, failed: 0 });
  });
});

it('the build runs the SQLite sink on its writer thread', () => {
  expect(fromBuild.writerThreadAvailable()).toBe(true);
});

it('a writer thread that cannot open the store fails start with its reason, and the results stay queued', async () => {
  dir = mkdtempSync(join(tmpdir(), 'qtune-sink-'));
  const broker = await EmbeddedBroker.open({ path: join(dir, 'broker.db') });
  const store = new SqliteStore({ path: join(dir, 'store.db') });
  opened.push(broker, store);
  const q = resultQueueOf('items');
  await broker.declareQueue(q);
  await broker.publish(
    q,
    [0, 1, 2].map((i) => resultMessage(result(i))),
  );
  // The thread opens the file anew and finds a schema this version does not know.
  const setVersion = (v: number) => {
    const db = new Database(join(dir, 'store.db'));
    db.pragma(`user_version = ${v}`);
    db.close();
  };
  setVersion(99);
  const options = { broker, store, queue: 'items', table: 'rows', batchSize: 50 };
  await expect(fromBuild.Sink.start(options)).rejects.toThrow(/schema version 99/);
  const left = await broker.stats(q);
  expect(left.inFlight).toBe(0);
  expect(left.ready + left.delayed).toBe(3);

  setVersion(2);
  const sink = await fromBuild.Sink.start({ ...options, retryDelayMs: 50 });
  await waitFor(() => sink.stats.stored >= 3, 20_000, 'three results stored');
  await sink.stop();
  expect(await store.results.resultCounts('rows')).toEqual({ total: 3, ok: 3, failed: 0 });
});
