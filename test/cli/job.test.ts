import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedBroker } from '../../src/broker/embedded/index.js';
import { resultMessage, resultQueueOf } from '../../src/patterns/work-queue.js';
import type { TaskResult } from '../../src/protocol/result.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import {
  FIXTURES,
  assertBuilt,
  exited,
  killAll,
  runCli,
  startCli,
  tempBroker,
  type RunResult,
} from './helpers.js';
import { waitFor } from '../support/wait.js';
import type { ChildProcess } from 'node:child_process';

const FLAKY = join(FIXTURES, 'job/flaky.mjs');

let env: ReturnType<typeof tempBroker>;
let store: string;
const children: ChildProcess[] = [];
const opened: { close(): Promise<void> }[] = [];

beforeAll(() => assertBuilt());

afterEach(async () => {
  killAll(children.splice(0));
  for (const o of opened.splice(0)) await o.close();
  env?.cleanup();
});

function setup(): void {
  env = tempBroker();
  store = join(env.dir, 'store.db');
}

/** Runs qtune with this test's broker and store. */
function q(args: string[], input?: string): Promise<RunResult> {
  return runCli(
    [...args, '--broker', env.url, '--store', store],
    input === undefined ? {} : { input },
  );
}

function writeItems(name: string, items: object[]): string {
  const path = join(env.dir, name);
  writeFileSync(path, items.map((i) => JSON.stringify(i)).join('\n') + '\n');
  return path;
}

async function openBroker(): Promise<EmbeddedBroker> {
  const b = await EmbeddedBroker.open({ path: env.url });
  opened.push(b);
  return b;
}

function openStore(): SqliteStore {
  const s = new SqliteStore({ path: store });
  opened.push(s);
  return s;
}

/** Starts a worker on `queue` and waits until `n` results wait in its result queue. */
async function work(queue: string, n: number, extra: string[] = [], extraEnv = {}): Promise<void> {
  const worker = startCli(
    ['worker', queue, '--module', FLAKY, '--concurrency', '4', '--broker', env.url, ...extra],
    extraEnv,
  );
  children.push(worker);
  const broker = await openBroker();
  await waitFor(
    async () => (await broker.stats(resultQueueOf(queue))).ready >= n,
    60_000,
    `${n} results of ${queue}`,
  );
  worker.kill('SIGTERM');
  expect((await exited(worker)).code).toBe(0);
}

async function status(
  name: string,
): Promise<Record<string, unknown> & { workers: Record<string, unknown>[] }> {
  const res = await q(['job', 'status', name, '--json']);
  expect(res.code, res.stderr).toBe(0);
  return JSON.parse(res.stdout);
}

function fakeResult(i: number, key = `key-${i}`): TaskResult {
  const now = Date.now();
  return {
    taskId: `task-${i}`,
    key,
    ok: true,
    value: { i },
    worker: {
      host: 'gpu-box-1',
      pid: 4242,
      id: 'w-1',
      gpus: [{ name: 'NVIDIA L4', memoryMiB: 23034 }],
    },
    startedAt: now - 5,
    finishedAt: now,
    durationMs: 5,
    attempt: 1,
  };
}

describe('qtune job and qtune sink', () => {
  it('submits one task per item, skips items already submitted, and rejects a malformed file whole', async () => {
    setup();
    const items = Array.from({ length: 300 }, (_, i) => ({ name: `company-${i}`, n: i }));
    const first = await q([
      'job',
      'submit',
      'companies',
      '--input',
      writeItems('a.jsonl', items),
      '--key',
      'name',
      '--json',
    ]);
    expect(first.code, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toMatchObject({ items: 300, added: 300, published: 300 });

    const more = [
      ...items,
      ...Array.from({ length: 20 }, (_, i) => ({ name: `late-${i}`, n: 1000 + i })),
    ];
    const again = await q([
      'job',
      'submit',
      'companies',
      '--input',
      writeItems('b.jsonl', more),
      '--key',
      'name',
      '--json',
    ]);
    expect(again.code, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ items: 320, added: 20, published: 20 });

    const broker = await openBroker();
    expect((await broker.stats('companies')).ready).toBe(320);

    const bad = join(env.dir, 'bad.jsonl');
    writeFileSync(bad, '{"name":"a"}\n{"name":"b"}\n{"name": c}\n{"name":"d"}\n');
    const rejected = await q(['job', 'submit', 'broken', '--input', bad]);
    expect(rejected.code).toBe(2);
    expect(rejected.stderr).toContain('line 3');
    expect((await q(['job', 'status', 'broken'])).code).toBe(4);
    expect((await broker.stats('broken')).ready).toBe(0);

    const missingKey = writeItems('nokey.jsonl', [{ name: 'a' }, { title: 'b' }]);
    const noKey = await q(['job', 'submit', 'nokey', '--input', missingKey, '--key', 'name']);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toMatch(/line 2: item has no key field "name"/);

    // Stdin is read once and held: the same items, then a malformed line.
    const piped = await q(
      ['job', 'submit', 'piped', '--input', '-', '--key', 'name', '--json'],
      '{"name":"x"}\n{"name":"y"}\n{"name":"x"}\n',
    );
    expect(piped.code, piped.stderr).toBe(0);
    expect(JSON.parse(piped.stdout)).toMatchObject({ items: 3, added: 2, published: 2 });
    const pipedBad = await q(
      ['job', 'submit', 'piped2', '--input', '-', '--key', 'name'],
      '{"name":"x"}\n{"title":"y"}\n',
    );
    expect(pipedBad.code).toBe(2);
    expect(pipedBad.stderr).toMatch(/stdin line 2: item has no key field "name"/);
    expect((await broker.stats('piped2')).ready).toBe(0);
  });

  it("stores every item's result once with its worker, price and attempt, and reports progress and cost", async () => {
    setup();
    const items = Array.from({ length: 200 }, (_, i) => ({ name: `co-${i}` }));
    expect(
      (await q(['job', 'submit', 'co', '--input', writeItems('i.jsonl', items), '--key', 'name']))
        .code,
    ).toBe(0);
    await work('co', 200, ['--price-per-hour', '2.5']);

    // Every result twice in the queue, as a redelivery after a crash would leave it.
    const broker = await openBroker();
    const copies: Buffer[] = [];
    const consumer = await broker.consume(
      resultQueueOf('co'),
      async (d) => {
        copies.push(d.body);
        await d.ack();
      },
      { prefetch: 500 },
    );
    await waitFor(() => copies.length === 200, 20_000, 'results taken');
    await consumer.cancel();
    await broker.publish(
      resultQueueOf('co'),
      [...copies, ...copies].map((body) => ({ body })),
    );
    const sunk = await q(['sink', 'co', '--json']);
    expect(sunk.code, sunk.stderr).toBe(0);
    expect(JSON.parse(sunk.stdout)).toMatchObject({ stored: 400, inserted: 200, invalid: 0 });
    // And once more after they were stored: each updates its row.
    await broker.publish(
      resultQueueOf('co'),
      copies.map((body) => ({ body })),
    );
    const again = await q(['sink', 'co', '--json']);
    expect(JSON.parse(again.stdout)).toMatchObject({ stored: 200, inserted: 0, updated: 200 });

    const s = openStore();
    expect(await s.results.resultCounts('co')).toEqual({ total: 200, ok: 200, failed: 0 });
    const rows = await s.results.listResults('co', { limit: 1000 });
    expect(rows.every((r) => r.writes >= 2 && r.pricePerHour === 2.5 && r.attempt === 1)).toBe(
      true,
    );
    const items2 = await s.jobs.listJobItems('co', { limit: 1000 });
    expect(new Set(rows.map((r) => r.id))).toEqual(new Set(items2.map((i) => i.id)));

    const st = await status('co');
    expect(st).toMatchObject({
      items: 200,
      done: 200,
      failed: 0,
      remaining: 0,
      queued: 0,
      inFlight: 0,
    });
    expect(st.workers).toHaveLength(1);
    expect(st.workers[0]).toMatchObject({ done: 200, pricePerHour: 2.5 });
    expect((st.cost as { perThousand: number }).perThousand).toBeGreaterThan(0);

    const csv = await q(['job', 'export', 'co', '--format', 'csv']);
    const lines = csv.stdout.trim().split('\n');
    expect(lines[0]).toBe(
      'id,status,name,value,error_code,error_message,host,gpu,attempt,duration_ms,finished_at',
    );
    expect(lines).toHaveLength(201);
    expect(lines.slice(1).every((l) => l.includes(',done,co-'))).toBe(true);
  });

  it('retries failed items: their dead letters run again and the sink replaces the failed rows', async () => {
    setup();
    const fixed = join(env.dir, 'fixed');
    const items = Array.from({ length: 50 }, (_, i) => ({ name: `c${i}`, fail: i % 10 === 0 }));
    expect(
      (
        await q([
          'job',
          'submit',
          'retry',
          '--input',
          writeItems('r.jsonl', items),
          '--key',
          'name',
        ])
      ).code,
    ).toBe(0);
    await work('retry', 50, ['--max-attempts', '1'], { QTUNE_TEST_FIXED: fixed });
    expect((await q(['sink', 'retry'])).code).toBe(0);
    expect(await status('retry')).toMatchObject({ done: 45, failed: 5, deadLettered: 5 });

    const failed = await q(['job', 'export', 'retry', '--status', 'failed']);
    const failedLines = failed.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(failedLines.map((l) => l.item.name).sort()).toEqual(['c0', 'c10', 'c20', 'c30', 'c40']);
    expect(failedLines[0].error.message).toContain('cannot describe');

    writeFileSync(fixed, '');
    const retried = await q(['job', 'retry-failed', 'retry', '--json']);
    expect(retried.code, retried.stderr).toBe(0);
    expect(JSON.parse(retried.stdout)).toMatchObject({ requeued: 5, republished: 0 });
    await work('retry', 5, [], { QTUNE_TEST_FIXED: fixed });
    expect((await q(['sink', 'retry'])).code).toBe(0);
    expect(await status('retry')).toMatchObject({
      done: 50,
      failed: 0,
      deadLettered: 0,
      remaining: 0,
    });
    expect(existsSync(fixed)).toBe(true);
  });

  it('dead-letters a message that is not a result, with its reason, and stores the rest', async () => {
    setup();
    const broker = await openBroker();
    await broker.declareQueue(resultQueueOf('mixed'));
    await broker.publish(resultQueueOf('mixed'), [
      { body: 'not json at all' },
      resultMessage(fakeResult(1)),
      { body: JSON.stringify({ qtune: 1, id: 'x', type: 'task', payload: {} }) },
      resultMessage(fakeResult(2)),
    ]);
    const sunk = await q(['sink', 'mixed', '--table', 'mixed_rows', '--json']);
    expect(sunk.code, sunk.stderr).toBe(0);
    expect(JSON.parse(sunk.stdout)).toMatchObject({ stored: 2, invalid: 2 });
    const dead = await q(['dlq', resultQueueOf('mixed'), '--json']);
    const reasons = dead.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).reason as string);
    expect(reasons).toHaveLength(2);
    expect(reasons.some((r) => r.startsWith('MALFORMED_JSON'))).toBe(true);
    const s = openStore();
    const rows = await s.results.listResults('mixed_rows');
    expect(rows.map((r) => r.id).sort()).toEqual(['key-1', 'key-2']);
    expect(rows[0]).toMatchObject({
      host: 'gpu-box-1',
      gpu: 'NVIDIA L4 (23034 MiB)',
      durationMs: 5,
    });
  });

  // Small batches are killed between commits; batches of the default size are written in
  // several chunks in one transaction, which the kill cuts short.
  it.each([
    { batch: 10, total: 20_000 },
    { batch: 5000, total: 60_000 },
  ])(
    'a sink killed with SIGKILL mid-run and started again leaves exactly one row per result (batches of $batch)',
    async ({ batch, total }) => {
      setup();
      const broker = await openBroker();
      await broker.declareQueue(resultQueueOf('big'), { leaseMs: 2000 });
      for (let i = 0; i < total; i += 1000) {
        await broker.publish(
          resultQueueOf('big'),
          Array.from({ length: 1000 }, (_, j) => resultMessage(fakeResult(i + j))),
        );
      }
      const s = openStore();
      const sink = startCli([
        'sink',
        'big',
        '--batch',
        String(batch),
        '--follow',
        '--broker',
        env.url,
        '--store',
        store,
      ]);
      children.push(sink);
      const atKill = await waitFor(
        async () => {
          const n = (await s.results.hasResultTable('big'))
            ? (await s.results.resultCounts('big')).total
            : 0;
          return n > 0 ? n : undefined;
        },
        30_000,
        'first rows',
      );
      sink.kill('SIGKILL');
      await exited(sink);
      expect(atKill).toBeLessThan(total);

      const again = await q(['sink', 'big', '--json']);
      expect(again.code, again.stderr).toBe(0);
      expect(await s.results.resultCounts('big')).toEqual({ total, ok: total, failed: 0 });
      const ids = new Set<string>();
      let afterId: string | undefined;
      for (;;) {
        const page = await s.results.listResults('big', {
          limit: 5000,
          ...(afterId !== undefined && { afterId }),
        });
        if (page.length === 0) break;
        for (const r of page) ids.add(r.id);
        afterId = page.at(-1)!.id;
      }
      expect(ids.size).toBe(total);
      expect((await broker.stats(resultQueueOf('big'))).ready).toBe(0);
    },
  );
});
