import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TaskResult } from '../../src/protocol/result.js';
import {
  FIXTURES,
  assertBuilt,
  exited,
  killAll,
  readResults,
  runCli,
  startCli,
  tempBroker,
} from '../cli/helpers.js';
import { workerCrashSuite } from '../worker/crash-suite.js';
import { waitFor } from '../support/wait.js';
import { TOKENS, call, startServe } from './helpers.js';

const SLEEPY = join(FIXTURES, 'handlers/sleepy.mjs');

type Env = ReturnType<typeof tempBroker>;
let env: Env | undefined;
const children: ReturnType<typeof startCli>[] = [];

beforeAll(() => assertBuilt());
afterEach(() => {
  killAll(children);
  children.length = 0;
  env?.cleanup();
  env = undefined;
});

/** Starts `qtune serve` on a free port over the temp dir's embedded broker; resolves its URL. */
async function serve(e: {
  url: string;
}): Promise<{ url: string; child: ReturnType<typeof startCli> }> {
  const started = await startServe(['--broker', e.url]);
  children.push(started.child);
  return started;
}

function gatewayWorker(e: Env, url: string, queue: string, ...extra: string[]) {
  const c = startCli(
    ['worker', queue, '--gateway', url, '--token', TOKENS.worker, '--module', SLEEPY, ...extra],
    { MARK_DIR: e.marks, QTUNE_BROKER: '' },
  );
  children.push(c);
  return c;
}

async function consumers(url: string, queue: string): Promise<number> {
  const res = await call(url, 'GET', `/v1/queues/${queue}`, { token: TOKENS.producer });
  return (res.json as { consumers?: number } | undefined)?.consumers ?? 0;
}

async function submit(url: string, queue: string, payloads: readonly unknown[]): Promise<string[]> {
  const res = await call(url, 'POST', `/v1/queues/${queue}/tasks?key=id`, {
    token: TOKENS.producer,
    json: payloads,
  });
  expect(res.status, res.text).toBe(200);
  return (res.json as { ids: string[] }).ids;
}

describe('qtune serve', () => {
  it('refuses to start without a token, and with --no-auth off a loopback host (exit 2)', async () => {
    env = tempBroker();
    const none = await runCli(['serve', '--port', '0', '--broker', env.url], {
      env: { QTUNE_TOKENS: '' },
    });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('no tokens');
    const open = await runCli(
      ['serve', '--port', '0', '--host', '0.0.0.0', '--no-auth', '--broker', env.url],
      {
        env: { QTUNE_TOKENS: '' },
      },
    );
    expect(open.code).toBe(2);
    expect(open.stderr).toContain('loopback');
  });

  it('purges and pauses a queue with `qtune queue` through the gateway, for an admin token only', async () => {
    env = tempBroker();
    const { url } = await serve(env);
    await submit(url, 'jobs', [{ id: 'a' }, { id: 'b' }, { id: 'c' }]);
    const queueCmd = (token: string, ...args: string[]) =>
      runCli(['queue', ...args, '--broker', url, '--json'], { env: { QTUNE_TOKEN: token } });
    const refused = await queueCmd(TOKENS.producer, 'purge', 'jobs');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('403');
    const paused = await queueCmd(TOKENS.admin, 'pause', 'jobs');
    expect(paused.code, paused.stderr).toBe(0);
    const purged = await queueCmd(TOKENS.admin, 'purge', 'jobs');
    expect(purged.code, purged.stderr).toBe(0);
    expect(JSON.parse(purged.stdout.trim())).toEqual({ queue: 'jobs', purged: 3 });
    const missing = await queueCmd(TOKENS.admin, 'purge', 'jbos');
    expect(missing.code).toBe(4);
    expect(missing.stderr).toContain('did you mean "jobs"');
  });

  it('runs tasks for a `qtune worker --gateway` child and stops cleanly on SIGTERM', async () => {
    env = tempBroker();
    const e = env;
    const { url, child } = await serve(e);
    const q = 'through-gateway';
    const ids = await submit(
      url,
      q,
      Array.from({ length: 12 }, (_, i) => ({ id: `t${i}`, ms: 5 })),
    );
    const w = gatewayWorker(e, url, q, '--concurrency', '3');
    const results: TaskResult<{ id: string; pid: number }>[] = [];
    await waitFor(
      async () => {
        results.push(...(await readResults<{ id: string; pid: number }>(q, e.url)));
        return new Set(results.map((r) => r.key)).size === 12;
      },
      30_000,
      'twelve results',
    );
    expect(results.every((r) => r.ok)).toBe(true);
    expect(new Set(results.map((r) => r.taskId))).toEqual(new Set(ids));
    expect(results.every((r) => r.worker.pid === w.pid)).toBe(true);
    expect(results.find((r) => r.key === 't3')?.value).toEqual({ id: 't3', pid: w.pid });

    w.kill('SIGTERM');
    expect((await exited(w)).code, w.stderrText()).toBe(0);
    child.kill('SIGTERM');
    const stop = await exited(child);
    expect(stop.code, child.stderrText()).toBe(0);
    expect(child.stderrText()).toContain('gateway stopped');
    for (const secret of Object.values(TOKENS)) expect(child.stderrText()).not.toContain(secret);
  });
});

workerCrashSuite('the gateway (qtune serve over the embedded broker)', async ({ dir }) => {
  const brokerUrl = join(dir, 'broker.db');
  const { url, child } = await serve({ url: brokerUrl });
  return {
    brokerUrl,
    workerArgs: ['--gateway', url, '--token', TOKENS.worker, '--lease', '1s'],
    workerEnv: { QTUNE_BROKER: '' },
    submit: async (queue, payloads) => void (await submit(url, queue, payloads)),
    consumers: (queue) => consumers(url, queue),
    close: async () => {
      child.kill('SIGKILL');
      await exited(child);
    },
  };
});
