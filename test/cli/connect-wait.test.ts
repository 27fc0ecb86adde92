import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort, RabbitNode } from '../support/rabbitmq.mjs';
import {
  FIXTURES,
  assertBuilt,
  exited,
  killAll,
  publishPayloads,
  runCli,
  startCli,
  tempBroker,
} from './helpers.js';
import { waitFor } from '../support/wait.js';

const SLEEPY = join(FIXTURES, 'handlers/sleepy.mjs');
const children: ReturnType<typeof startCli>[] = [];
let node: RabbitNode | undefined;
let env: ReturnType<typeof tempBroker> | undefined;

beforeAll(() => assertBuilt());
afterEach(async () => {
  killAll(children.splice(0));
  await node?.stop();
  node = undefined;
  env?.cleanup();
  env = undefined;
}, 120_000);

describe('long-running commands wait for a broker that is down', () => {
  it(
    'a worker and a results follower started before RabbitMQ wait for it, then process a task',
    { timeout: 180_000 },
    async () => {
      env = tempBroker();
      node = await RabbitNode.create();
      const url = node.url;
      const worker = startCli(['worker', 'late', '--module', SLEEPY, '--broker', url]);
      children.push(worker);
      const follower = startCli(['results', 'late', '--follow', '--broker', url]);
      children.push(follower);
      let printed = '';
      follower.stdout!.on('data', (b: Buffer) => (printed += b.toString()));
      await waitFor(
        () => /ECONNREFUSED.*retrying in/.test(worker.stderrText()),
        30_000,
        "the worker's retry line",
      );
      expect(worker.exitCode).toBeNull();
      await node.start();
      await waitFor(
        () => worker.stderrText().includes('reachable; connected'),
        60_000,
        'the worker to connect',
      );
      // The follower waits for the task queue too, which the worker declares.
      await publishPayloads(env.dir, url, 'late', [{ id: 'after-start', ms: 1 }]);
      await waitFor(() => printed.includes('"after-start"'), 60_000, 'the result on the follower');
      const result = JSON.parse(printed.trim().split('\n')[0]!) as { ok: boolean; key: string };
      expect(result).toMatchObject({ ok: true, key: 'after-start' });
      worker.kill('SIGTERM');
      follower.kill('SIGTERM');
      expect((await exited(worker)).code).toBe(0);
      expect((await exited(follower)).code).toBe(0);
    },
  );

  it('gives up with exit 3 after --connect-timeout, and one-shot commands fail at once', async () => {
    const url = `amqp://guest:guest@127.0.0.1:${await freePort()}`;
    const worker = await runCli([
      'worker',
      'q',
      '--exec',
      'cat',
      '--connect-timeout',
      '2s',
      '--broker',
      url,
    ]);
    expect(worker.code).toBe(3);
    expect(worker.stderr).toMatch(/retrying in/);
    expect(worker.stderr).toContain('gave up after --connect-timeout 2000ms');
    for (const args of [['status'], ['results', 'q'], ['publish', 'q', '--file', '-']]) {
      const res = await runCli([...args, '--broker', url], { input: '{"a":1}\n' });
      expect(res.code, args.join(' ')).toBe(3);
      expect(res.stderr).toContain('ECONNREFUSED');
      expect(res.stderr).not.toContain('retrying');
    }
  });
});
