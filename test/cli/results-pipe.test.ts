import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedBroker } from '../../src/broker/embedded/index.js';
import { resultMessage, resultQueueOf } from '../../src/patterns/work-queue.js';
import type { TaskResult } from '../../src/protocol/result.js';
import { CLI, assertBuilt, exited, tempBroker } from './helpers.js';

let env: ReturnType<typeof tempBroker> | undefined;
beforeAll(() => assertBuilt());
afterEach(() => {
  env?.cleanup();
  env = undefined;
});

function result(i: number): TaskResult {
  const t = Date.now();
  return {
    taskId: randomUUID(),
    key: `item-${i}`,
    ok: true,
    // About 300 bytes a line: the whole output is many times a pipe's 64 KiB buffer.
    value: { text: `result ${i} `.padEnd(160, '.') },
    worker: { host: 'test-host', pid: 4242, id: 'w1' },
    startedAt: t,
    finishedAt: t,
    durationMs: 1,
    attempt: 1,
  };
}

/** Puts `n` results in the result queue of `queue`; returns their task ids. */
async function waitingResults(url: string, queue: string, n: number): Promise<Set<string>> {
  const broker = await EmbeddedBroker.open({ path: url });
  const ids = new Set<string>();
  try {
    await broker.declareQueue(resultQueueOf(queue));
    for (let i = 0; i < n; i += 500) {
      const batch = [];
      for (let j = i; j < Math.min(n, i + 500); j++) {
        const r = result(j);
        ids.add(r.taskId);
        batch.push(resultMessage(r));
      }
      await broker.publish(resultQueueOf(queue), batch);
    }
  } finally {
    await broker.close();
  }
  return ids;
}

/**
 * Runs `qtune ARGS` with stdout read by a slow reader: nothing for `stallMs`, then one chunk at
 * a time with a pause after each.
 */
async function runIntoSlowPipe(args: string[], stallMs: number) {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const done = exited(child);
  child.stdout.pause();
  await sleep(stallMs);
  const chunks: Buffer[] = [];
  for await (const chunk of child.stdout) {
    chunks.push(chunk as Buffer);
    await sleep(2);
  }
  const { code } = await done;
  return { code, stdout: Buffer.concat(chunks).toString('utf8'), stderr };
}

describe('qtune results into a pipe', () => {
  it('prints every result to a slow reader without a listener-leak warning', async () => {
    env = tempBroker();
    const ids = await waitingResults(env.url, 'slowpipe', 5_000);
    const res = await runIntoSlowPipe(['results', 'slowpipe', '--broker', env.url], 1_500);

    expect(res.stderr).not.toMatch(/MaxListenersExceededWarning|Warning:/);
    expect(res.code).toBe(0);
    const lines = res.stdout.split('\n').filter((l) => l !== '');
    expect(lines).toHaveLength(5_000);
    const printed = new Set(lines.map((l) => (JSON.parse(l) as TaskResult).taskId));
    expect(printed).toEqual(ids);

    // Everything printed was acked, nothing is left or held.
    const broker = await EmbeddedBroker.open({ path: env.url });
    try {
      const stats = await broker.stats(resultQueueOf('slowpipe'));
      expect(stats.ready + stats.inFlight + stats.delayed).toBe(0);
    } finally {
      await broker.close();
    }
  });

  it('prints CSV to a slow reader: one header, then one row per result', async () => {
    env = tempBroker();
    const ids = await waitingResults(env.url, 'slowcsv', 3_000);
    const res = await runIntoSlowPipe(
      ['results', 'slowcsv', '--format', 'csv', '--broker', env.url],
      1_000,
    );

    expect(res.stderr).not.toMatch(/Warning:/);
    expect(res.code).toBe(0);
    const lines = res.stdout.split('\n').filter((l) => l !== '');
    expect(lines[0]).toMatch(/^taskId,key,task,ok,value,/);
    expect(lines).toHaveLength(3_001);
    expect(new Set(lines.slice(1).map((l) => l.split(',')[0]))).toEqual(ids);
  });
});
