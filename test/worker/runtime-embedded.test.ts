import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Broker } from '../../src/broker/contract.js';
import { DEAD_LETTER_REASON_HEADER } from '../../src/broker/contract.js';
import { openBroker } from '../../src/broker/open.js';
import { resultQueueOf, submitTasks } from '../../src/patterns/work-queue.js';
import type { TaskResult } from '../../src/protocol/result.js';
import { execHandler } from '../../src/worker/handlers/exec.js';
import { startWorker, type Worker } from '../../src/worker/runtime.js';
import { takeMessages, uniqueQueue } from './helpers.js';

const hostInfo = { host: 'test-host', pid: 1, id: 'test-host:1:0000' };

describe('worker runtime on the embedded broker', () => {
  let dir: string;
  const brokers: Broker[] = [];
  const workers: Worker[] = [];

  async function handle(): Promise<Broker> {
    const b = await openBroker(join(dir, 'broker.db'));
    brokers.push(b);
    return b;
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'qtune-worker-embedded-'));
  });
  afterEach(async () => {
    for (const w of workers.splice(0)) await w.stop({ graceMs: 0 });
    for (const b of brokers.splice(0)) await b.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs exec tasks submitted through another handle and answers each one', async () => {
    const producer = await handle();
    const queue = uniqueQueue('exec');
    const items = [1, 2, 3, 4, 5].map((n) => ({ payload: { n }, key: `item-${n}` }));
    const ids = await submitTasks(producer, queue, items);
    const w = await startWorker({
      broker: await handle(),
      queue,
      hostInfo,
      concurrency: 2,
      handler: execHandler(
        `node -e "process.stdin.on('data', d => console.log(JSON.parse(d).n * 10))"`,
      ),
    });
    workers.push(w);
    const taken = await takeMessages(producer, resultQueueOf(queue), 5, 20_000);
    const results = taken.map((t) => t.envelope.payload as TaskResult);
    expect(results.map((r) => r.taskId).sort()).toEqual([...ids].sort());
    expect(Object.fromEntries(results.map((r) => [r.key, r.value]))).toEqual({
      'item-1': 10,
      'item-2': 20,
      'item-3': 30,
      'item-4': 40,
      'item-5': 50,
    });
    expect(await producer.stats(queue)).toMatchObject({ ready: 0, inFlight: 0, delayed: 0 });
  });

  it('dead-letters a failing command with its exit code and stderr, with a failed result', async () => {
    const producer = await handle();
    const queue = uniqueQueue('fail');
    const [id] = await submitTasks(producer, queue, [{ payload: null }]);
    const w = await startWorker({
      broker: await handle(),
      queue,
      hostInfo,
      maxAttempts: 2,
      backoff: { baseMs: 10, jitter: 0 },
      handler: execHandler('echo "weights not found" >&2; exit 4'),
    });
    workers.push(w);
    const [dead] = await takeMessages(producer, `${queue}.dead`, 1, 20_000);
    expect(dead!.id).toBe(id);
    expect(dead!.headers[DEAD_LETTER_REASON_HEADER]).toMatch(
      /^HANDLER_FAILED: .*exited with code 4: weights not found/,
    );
    const [res] = await takeMessages(producer, resultQueueOf(queue), 1, 20_000);
    expect(res!.envelope.payload).toMatchObject({
      taskId: id,
      ok: false,
      attempt: 2,
      error: { code: 'HANDLER_FAILED' },
    });
  });
});
