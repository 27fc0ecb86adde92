import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, runCli, tempBroker } from './helpers.js';

let env: ReturnType<typeof tempBroker> | undefined;
beforeAll(() => assertBuilt());
afterEach(() => {
  env?.cleanup();
  env = undefined;
});

describe('qtune CLI', () => {
  it.each(['publish', 'worker', 'results', 'status', 'dlq', 'bench', 'demo'])(
    'prints help for "%s" and exits 0',
    async (cmd) => {
      const res = await runCli([cmd, '--help']);
      expect(res.code).toBe(0);
      expect(res.stdout).toContain(`Usage: qtune ${cmd}`);
      expect(res.stdout).toContain('--help');
    },
  );

  it('exits 2 on an unknown flag, naming it', async () => {
    const res = await runCli(['status', '--no-such-flag']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('--no-such-flag');
  });

  it('exits 2 on a malformed duration, naming the value', async () => {
    const res = await runCli(['worker', 'q', '--exec', 'cat', '--timeout', 'soon']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('"soon" is not a duration');
  });

  it('rejects a file with a malformed line by its number and publishes nothing', async () => {
    env = tempBroker();
    const file = join(env.dir, 'items.jsonl');
    writeFileSync(file, '{"id":1}\n{"id":2}\n{"id":3,\n{"id":4}\n');
    const res = await runCli(['publish', 'q', '--file', file, '--broker', env.url]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('line 3');
    expect(res.stderr).toContain('nothing was published');
    const status = await runCli(['status', '--json', '--wait', '0', '--broker', env.url]);
    const queues = JSON.parse(status.stdout).queues as { queue: string; ready: number }[];
    expect(queues.find((q) => q.queue === 'q')?.ready ?? 0).toBe(0);
  });

  it('rejects a missing key field by line number', async () => {
    env = tempBroker();
    const res = await runCli(['publish', 'q', '--key-field', 'id', '--broker', env.url], {
      input: '{"id":1}\n{"name":"x"}\n',
    });
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('stdin line 2: key field "id" is missing');
  });

  it('publishes from stdin and reports the count, visible in status', async () => {
    env = tempBroker();
    const res = await runCli(['publish', 'jobs', '--json', '--broker', env.url], {
      input: '{"a":1}\n\n"bare"\n[1,2]\n',
    });
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toEqual({ queue: 'jobs', published: 3 });
    const status = await runCli(['status', '--json', '--wait', '0', '--broker', env.url]);
    const q = (JSON.parse(status.stdout).queues as { queue: string; ready: number }[]).find(
      (x) => x.queue === 'jobs',
    );
    expect(q?.ready).toBe(3);
  });

  it('runs the demo to completion with two local workers', async () => {
    env = tempBroker();
    const res = await runCli(['demo', '--tasks', '200', '--json', '--broker', env.url], {
      timeoutMs: 60_000,
    });
    expect(res.code, res.stderr).toBe(0);
    const summary = JSON.parse(res.stdout.trim().split('\n').pop()!) as {
      done: number;
      failed: number;
      perWorker: Record<string, number>;
    };
    expect(summary.done).toBe(200);
    expect(summary.failed).toBe(0);
    expect(Object.values(summary.perWorker).reduce((a, b) => a + b, 0)).toBe(200);
  });
});
