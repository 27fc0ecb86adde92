import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURES, assertBuilt, killAll, runCli, startCli, tempBroker } from './helpers.js';
import { waitFor } from '../support/wait.js';

let env: ReturnType<typeof tempBroker> | undefined;
const children: ReturnType<typeof startCli>[] = [];
beforeAll(() => assertBuilt());
afterEach(() => {
  killAll(children);
  children.length = 0;
  env?.cleanup();
  env = undefined;
});

const COMMANDS = [
  'publish',
  'worker',
  'results',
  'status',
  'dlq',
  'bench',
  'demo',
  'experiment',
  'job',
  'sink',
  'serve',
  'queue',
];

/** Creates the broker file at `url`, as any command that produces work would. */
async function createBroker(url: string): Promise<void> {
  const res = await runCli(['publish', 'setup', '--file', '-', '--broker', url], {
    input: '{"a":1}\n',
  });
  expect(res.code).toBe(0);
}

describe('qtune CLI', () => {
  it.each(COMMANDS)('prints help for "%s" and exits 0', async (cmd) => {
    const res = await runCli([cmd, '--help']);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(`Usage: qtune ${cmd}`);
    expect(res.stdout).toContain('--help');
  });

  it('lists every command in the top-level help', async () => {
    const res = await runCli(['--help']);
    expect(res.code).toBe(0);
    for (const cmd of COMMANDS) expect(res.stdout).toMatch(new RegExp(`^  ${cmd} `, 'm'));
  });

  it('runs a command named after global options, and suggests one for a typo', async () => {
    env = tempBroker();
    await createBroker(env.url);
    const status = await runCli(['--log-level', 'silent', '--broker', env.url, 'status', '--json']);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toHaveProperty('queues');
    const typo = await runCli(['wroker']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('Did you mean worker?');
  });

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

  it.each([
    ['worker', 'q', '--exec', 'cat', '--timeout', '5'],
    ['worker', 'q', '--exec', 'cat', '--grace', '30'],
    ['status', '--wait', '500'],
    ['job', 'status', 'j', '--watch', '2'],
    ['job', 'submit', 'j', '--input', '-', '--lease', '30'],
    ['experiment', 'stop', 'e', '--wait', '--timeout', '10'],
    ['sink', 'q', '--connect-timeout', '2'],
    ['results', 'q', '--follow', '--connect-timeout', '2'],
  ])('refuses a duration without a unit with a hint, exit 2: %s %s', async (...args) => {
    env = tempBroker();
    const res = await runCli([...args, '--broker', env.url]);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/"\d+" has no unit \(add a unit: \d+s, \d+m/);
  });

  it('reads 0 and durations with a unit', async () => {
    env = tempBroker();
    await createBroker(env.url);
    const res = await runCli(['status', '--wait', '0', '--json', '--broker', env.url]);
    expect(res.code).toBe(0);
    const ms = await runCli(['status', '--wait', '5ms', '--json', '--broker', env.url]);
    expect(ms.code).toBe(0);
  });

  it.each([
    [['job', 'status']],
    [['job', 'submit', 'j', '--no-such-flag']],
    [['job', 'export']],
    [['experiment', 'status', '--no-such-flag']],
  ])('exits 2 on bad usage of a subcommand: %s', async (args) => {
    const res = await runCli(args);
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/error: (missing required argument|unknown option|required option)/);
  });

  it('rejects a file with a malformed line by its number and publishes nothing', async () => {
    env = tempBroker();
    const file = join(env.dir, 'items.jsonl');
    writeFileSync(file, '{"id":1}\n{"id":2}\n{"id":3,\n{"id":4}\n');
    const res = await runCli(['publish', 'q', '--file', file, '--broker', env.url]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('line 3');
    expect(res.stderr).toContain('nothing was published');
    // Nothing was opened, so not even the broker file exists.
    const status = await runCli(['status', '--json', '--wait', '0', '--broker', env.url]);
    expect(status.code).toBe(4);
    expect(status.stderr).toContain('does not exist');
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

  it('shows live workers per host in status and reads results as CSV', async () => {
    env = tempBroker();
    const w = startCli(
      ['worker', 'csvq', '--broker', env.url, '--module', join(FIXTURES, 'handlers/sleepy.mjs')],
      { MARK_DIR: env.marks },
    );
    children.push(w);
    const res = await runCli(['publish', 'csvq', '--key-field', 'id', '--broker', env.url], {
      input: '{"id":"a"}\n{"id":"b"}\n{"id":"c"}\n',
    });
    expect(res.code, res.stderr).toBe(0);
    const status = await waitFor(
      async () => {
        const out = await runCli(['status', '--json', '--wait', '1s', '--broker', env!.url]);
        const parsed = JSON.parse(out.stdout) as {
          queues: { queue: string; consumers: number; ready: number }[];
          hosts: { host: string; workers: number; done: number }[];
        };
        return parsed.hosts[0]?.done === 3 ? parsed : undefined;
      },
      20_000,
      'the worker to report 3 tasks done',
    );
    expect(status.hosts).toHaveLength(1);
    expect(status.hosts[0]!.workers).toBe(1);
    expect(status.queues.find((q) => q.queue === 'csvq')).toMatchObject({ consumers: 1, ready: 0 });

    const csv = await runCli(['results', 'csvq', '--format', 'csv', '--broker', env.url]);
    expect(csv.code, csv.stderr).toBe(0);
    const lines = csv.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^taskId,key,task,ok,value,errorCode,/);
    expect(
      lines
        .slice(1)
        .map((l) => l.split(',')[1])
        .sort(),
    ).toEqual(['a', 'b', 'c']);
    expect(lines.slice(1).every((l) => l.split(',')[3] === 'true')).toBe(true);
  });

  it('benchmarks a small run and reads every result back', async () => {
    const res = await runCli(['bench', '--tasks', '300', '--workers', '1', '--json'], {
      timeoutMs: 60_000,
    });
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout.trim().split('\n').pop()!) as {
      received: number;
      tasksPerSec: number;
    };
    expect(out.received).toBe(300);
    expect(out.tasksPerSec).toBeGreaterThan(0);
  });

  it('benchmarks with every worker serving metrics and scrapes them during the run', async () => {
    const res = await runCli(['bench', '--tasks', '300', '--workers', '2', '--metrics', '--json'], {
      timeoutMs: 60_000,
    });
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout.trim().split('\n').pop()!) as {
      received: number;
      scrapes: number;
    };
    expect(out.received).toBe(300);
    // The first scrape of both workers happens as the load starts.
    expect(out.scrapes).toBeGreaterThanOrEqual(2);
  });
});
