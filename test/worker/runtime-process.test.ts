import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Broker } from '../../src/broker/contract.js';
import { openBroker } from '../../src/broker/open.js';
import { resultQueueOf, submitTasks } from '../../src/patterns/work-queue.js';
import type { TaskResult } from '../../src/protocol/result.js';
import { takeMessages, uniqueQueue } from './helpers.js';

const ROOT = resolve(import.meta.dirname, '../..');
const CHILD = join(ROOT, 'test/fixtures/worker/worker-process.mjs');
const LEASE_MS = 600;

interface WorkerProcess {
  child: ChildProcess;
  events: { event: string; taskId?: string; pid: number }[];
  stderr: () => string;
  exited: Promise<number | null>;
}

describe('worker processes on one embedded broker file', () => {
  let dir: string;
  let db: string;
  let gate: string;
  let producer: Broker;
  const children: WorkerProcess[] = [];

  beforeAll(() => {
    if (!existsSync(join(ROOT, 'dist/worker/index.js'))) {
      throw new Error('dist/ is missing: run "npm run build" first (npm test does)');
    }
  });
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'qtune-worker-proc-'));
    db = join(dir, 'broker.db');
    gate = join(dir, 'go');
    producer = await openBroker(db);
  });
  afterEach(async () => {
    for (const c of children.splice(0))
      if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
    await producer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function startWorkerProcess(queue: string): WorkerProcess {
    const child = spawn(process.execPath, [CHILD, db, queue, String(LEASE_MS), gate], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const proc: WorkerProcess = {
      child,
      events: [],
      stderr: () => stderr,
      exited: new Promise((r) => child.on('exit', (code) => r(code))),
    };
    let stderr = '';
    let buffered = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdout!.on('data', (b: Buffer) => {
      buffered += b.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines)
        if (line.trim()) proc.events.push(JSON.parse(line) as WorkerProcess['events'][number]);
    });
    children.push(proc);
    return proc;
  }

  const started = (p: WorkerProcess): string[] =>
    p.events.filter((e) => e.event === 'started').map((e) => e.taskId!);

  it('on SIGTERM finishes the running tasks, puts the unstarted ones back and exits 0', async () => {
    const queue = uniqueQueue('term');
    const ids = await submitTasks(
      producer,
      queue,
      [1, 2, 3, 4, 5, 6].map((n) => ({ payload: { n } })),
    );
    const w = startWorkerProcess(queue);
    await vi.waitFor(() => expect(started(w)).toHaveLength(2), { timeout: 20_000, interval: 20 });
    w.child.kill('SIGTERM');
    // The running tasks may only finish once released; no new task may start meanwhile.
    await new Promise((r) => setTimeout(r, 100));
    writeFileSync(gate, '');
    expect(await w.exited, w.stderr()).toBe(0);
    expect(started(w)).toHaveLength(2);

    const results = (await takeMessages(producer, resultQueueOf(queue), 2, 20_000)).map(
      (t) => t.envelope.payload as TaskResult,
    );
    expect(results.map((r) => r.taskId).sort()).toEqual([...started(w)].sort());
    expect(await producer.stats(queue)).toMatchObject({ ready: 4, inFlight: 0 });
    const back = await takeMessages(producer, queue, 4, 20_000);
    expect([...results.map((r) => r.taskId), ...back.map((m) => m.id)].sort()).toEqual(
      [...ids].sort(),
    );
  });

  it('redelivers the tasks of a worker killed with SIGKILL to another worker', async () => {
    const queue = uniqueQueue('kill');
    // Declared first with a short lease: the first declaration fixes a queue's policy.
    await producer.declareQueue(queue, { leaseMs: LEASE_MS });
    const ids = await submitTasks(
      producer,
      queue,
      [1, 2, 3, 4].map((n) => ({ payload: { n } })),
    );
    const doomed = startWorkerProcess(queue);
    await vi.waitFor(() => expect(started(doomed)).toHaveLength(2), {
      timeout: 20_000,
      interval: 20,
    });
    doomed.child.kill('SIGKILL');
    await doomed.exited;
    writeFileSync(gate, '');
    const survivor = startWorkerProcess(queue);

    const taken = await takeMessages(producer, resultQueueOf(queue), 4, 20_000).catch(
      async (err: unknown) => {
        throw new Error(
          `${String(err)}; survivor events ${JSON.stringify(survivor.events)}, stderr ${survivor.stderr()}, stats ${JSON.stringify(await producer.stats(queue))}`,
        );
      },
    );
    const results = taken.map((t) => t.envelope.payload as TaskResult<{ n: number; pid: number }>);
    expect(results.map((r) => r.taskId).sort()).toEqual([...ids].sort());
    expect(results.every((r) => r.ok && r.value?.pid === survivor.child.pid)).toBe(true);
    const redelivered = results.filter((r) => started(doomed).includes(r.taskId));
    expect(redelivered).toHaveLength(2);
    expect(redelivered.every((r) => r.attempt === 2)).toBe(true);
    survivor.child.kill('SIGTERM');
    expect(await survivor.exited, survivor.stderr()).toBe(0);
  });
});
