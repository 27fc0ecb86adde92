// Interoperability on RabbitMQ: the pika examples (examples/python) written from
// docs/protocol.md alone, against qtune's own CLI worker, publisher and result reader.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { connect, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  assertBuilt,
  exited,
  FIXTURES,
  killAll,
  ROOT,
  runCli,
  runProcess,
  startCli,
} from '../cli/helpers.js';
import { waitFor } from '../support/wait.js';
import { rabbitAvailable, startRabbit, type RabbitNode } from '../support/rabbitmq.mjs';

const PYTHON = '/usr/bin/python3';
const EXAMPLES = join(ROOT, 'examples', 'python');
const pikaAvailable = rabbitAvailable() && spawnSync(PYTHON, ['-c', 'import pika']).status === 0;

interface Result {
  taskId: string;
  ok: boolean;
  value?: Record<string, unknown>;
  error?: { code: string; message: string };
  worker: { host: string; pid: number; id: string };
  startedAt: number;
  finishedAt: number;
  durationMs: number;
  attempt: number;
}

/** Runs a Python example to completion. */
function runPython(script: string, args: string[], timeoutMs = 60_000) {
  return runProcess(PYTHON, [join(EXAMPLES, script), ...args], { cwd: EXAMPLES, timeoutMs });
}

const jsonLines = <T>(text: string): T[] =>
  text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);

describe.skipIf(!pikaAvailable)('pika clients and qtune on RabbitMQ', () => {
  let node: RabbitNode;
  let conn: ChannelModel;

  /** Messages ready in `queue` and its consumers, as RabbitMQ reports them. */
  async function inspect(queue: string): Promise<{ messageCount: number; consumerCount: number }> {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined); // a missing queue closes the channel with 404
    try {
      return await ch.checkQueue(queue);
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  beforeAll(async () => {
    assertBuilt();
    node = await startRabbit();
    conn = await connect(node.url);
  }, 120_000);

  afterAll(async () => {
    await conn?.close().catch(() => undefined);
    await node?.stop();
  }, 120_000);

  it('a qtune worker answers every task of the pika producer exactly once, bare or enveloped', async () => {
    const queue = 'interop.pika-producer';
    const worker = startCli([
      'worker',
      queue,
      '--broker',
      node.url,
      '--module',
      join(FIXTURES, 'worker', 'double.mjs'),
    ]);
    try {
      await waitFor(
        async () => (await inspect(queue).catch(() => undefined))?.consumerCount === 1,
        30_000,
        `the qtune worker consuming ${queue}\n${worker.stderrText()}`,
      );
      for (const [mode, tasks] of [
        ['bare', 20],
        ['envelope', 10],
      ] as const) {
        const run = await runPython('producer.py', [
          '--url',
          node.url,
          '--queue',
          queue,
          '--tasks',
          String(tasks),
          '--timeout',
          '45',
          ...(mode === 'envelope' ? ['--envelope'] : []),
        ]);
        expect(run.stderr, `${mode}: ${run.stderr}`).toContain(
          `received ${tasks} of ${tasks} result(s), 0 duplicate(s)`,
        );
        expect(run.code).toBe(0);
        const results = jsonLines<Result>(run.stdout);
        expect(results).toHaveLength(tasks);
        expect(new Set(results.map((r) => r.taskId)).size).toBe(tasks);
        for (const r of results) {
          expect(r.ok).toBe(true);
          expect(r.attempt).toBe(1);
          // The handler saw the producer's {"n": i} as its payload and the same task id.
          expect(r.value?.taskId).toBe(r.taskId);
          expect(r.worker.pid).toBe(worker.pid);
        }
        const doubled = results.map((r) => r.value?.doubled).sort((a, b) => Number(a) - Number(b));
        expect(doubled).toEqual(Array.from({ length: tasks }, (_, i) => 2 * i));
      }
      expect((await inspect(queue)).messageCount).toBe(0);
      expect((await inspect(`${queue}.results`)).messageCount).toBe(0);
    } finally {
      worker.kill('SIGTERM');
      const exit = await Promise.race([exited(worker), new Promise((r) => setTimeout(r, 15_000))]);
      if (exit === undefined) killAll([worker]);
    }
  }, 120_000);

  it('the pika worker answers tasks published by qtune; qtune reads its results and dead letters', async () => {
    const queue = 'interop.pika-worker';
    const tasks = 15;
    const lines = [
      ...Array.from({ length: tasks }, (_, i) => JSON.stringify({ n: i, id: `t${i}` })),
      JSON.stringify({ fail: 'asked to fail' }),
    ];
    const published = await runCli(['publish', queue, '--broker', node.url, '--key-field', 'n'], {
      input: `${lines.slice(0, tasks).join('\n')}\n`,
    });
    expect(published.stderr).toBe('');
    expect(published.code).toBe(0);
    const failing = await runCli(['publish', queue, '--broker', node.url], {
      input: `${lines[tasks]}\n`,
    });
    expect(failing.code).toBe(0);

    const work = await runPython('worker.py', [
      '--url',
      node.url,
      '--queue',
      queue,
      '--max-tasks',
      String(tasks + 1),
      '--max-attempts',
      '1',
    ]);
    expect(work.code, work.stderr).toBe(0);
    expect(work.stderr).toContain(`handled ${tasks + 1} deliveries`);

    const read = await runCli(['results', queue, '--broker', node.url]);
    expect(read.code, read.stderr).toBe(0);
    const results = jsonLines<Result & { key?: string }>(read.stdout);
    expect(results).toHaveLength(tasks + 1);
    expect(new Set(results.map((r) => r.taskId)).size).toBe(tasks + 1);
    const good = results.filter((r) => r.ok);
    expect(good).toHaveLength(tasks);
    for (const r of good) {
      const n = Number(r.key);
      expect(r.value).toEqual({ n, square: n * n });
      expect(r.attempt).toBe(1);
      expect(r.worker.host).not.toBe('');
      expect(r.durationMs).toBe(r.finishedAt - r.startedAt);
    }
    expect(good.map((r) => Number(r.key)).sort((a, b) => a - b)).toEqual(
      Array.from({ length: tasks }, (_, i) => i),
    );
    const bad = results.find((r) => !r.ok);
    expect(bad?.error).toEqual({ code: 'HANDLER_FAILED', message: 'asked to fail' });

    const dlq = await runCli(['dlq', queue, '--broker', node.url, '--json']);
    expect(dlq.code, dlq.stderr).toBe(0);
    const dead = jsonLines<{ id: string; queue: string; reason: string; deliveries: number }>(
      dlq.stdout,
    );
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({
      id: bad?.taskId,
      queue,
      reason: 'HANDLER_FAILED: asked to fail',
      deliveries: 1,
    });
  }, 120_000);
});
