import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedBroker } from '../../src/broker/embedded/index.js';
import { resultQueueOf } from '../../src/patterns/work-queue.js';
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

const SLEEPY = join(FIXTURES, 'handlers/sleepy.mjs');

let env: ReturnType<typeof tempBroker>;
const children: ReturnType<typeof startCli>[] = [];
const opened: EmbeddedBroker[] = [];
beforeAll(() => assertBuilt());
afterEach(async () => {
  killAll(children.splice(0));
  for (const b of opened.splice(0)) await b.close();
  env?.cleanup();
});

function q(args: string[], input?: string): Promise<RunResult> {
  return runCli(
    [...args, '--broker', env.url, '--store', join(env.dir, 'store.db')],
    input === undefined ? {} : { input },
  );
}

async function broker(): Promise<EmbeddedBroker> {
  const b = await EmbeddedBroker.open({ path: env.url });
  opened.push(b);
  return b;
}

async function publish(queue: string, payloads: object[]): Promise<void> {
  const res = await q(
    ['publish', queue, '--file', '-'],
    payloads.map((p) => JSON.stringify(p)).join('\n') + '\n',
  );
  expect(res.code, res.stderr).toBe(0);
}

describe('qtune queue', () => {
  it.each(['purge', 'delete', 'pause', 'resume'])('prints help for "queue %s"', async (verb) => {
    const res = await runCli(['queue', verb, '--help']);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(`Usage: qtune queue ${verb} [options] <queue>`);
    expect(res.stdout).toContain('Exit codes:');
  });

  it('purges the waiting tasks of a queue and reports how many', async () => {
    env = tempBroker();
    await publish('prompts', [{ id: 1 }, { id: 2 }, { id: 3 }]);
    const res = await q(['queue', 'purge', 'prompts', '--json']);
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toEqual({ queue: 'prompts', purged: 3 });
    expect((await (await broker()).stats('prompts')).ready).toBe(0);
    const text = await q(['queue', 'purge', 'prompts']);
    expect(text.stdout).toBe('purged 0 task(s) from "prompts"\n');
  });

  it('deletes a queue', async () => {
    env = tempBroker();
    await publish('prompts', [{ id: 1 }]);
    const res = await q(['queue', 'delete', 'prompts', '--json']);
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toEqual({ queue: 'prompts', deleted: true });
    expect(await (await broker()).listQueues()).not.toContain('prompts');
  });

  it('refuses an unknown queue for every verb, exit 4, with the closest name, creating nothing', async () => {
    env = tempBroker();
    await publish('prompts', [{ id: 1 }]);
    for (const verb of ['purge', 'delete', 'pause', 'resume']) {
      const res = await q(['queue', verb, 'promts']);
      expect(res.code, verb).toBe(4);
      expect(res.stderr).toContain('queue "promts" does not exist (did you mean "prompts"?)');
    }
    expect(await (await broker()).listQueues()).not.toContain('promts');
  });

  it('pauses a queue: a worker takes nothing from it until it is resumed', async () => {
    env = tempBroker();
    await publish('paused', [{ id: 1 }, { id: 2 }]);
    const pause = await q(['queue', 'pause', 'paused', '--json']);
    expect(pause.code, pause.stderr).toBe(0);
    expect(JSON.parse(pause.stdout)).toEqual({ queue: 'paused', paused: true });
    const b = await broker();
    expect((await b.stats('paused')).paused).toBe(true);
    const worker = startCli(['worker', 'paused', '--module', SLEEPY, '--broker', env.url]);
    children.push(worker);
    await waitFor(async () => (await b.stats('paused')).consumers >= 1, 20_000, 'the worker');
    await new Promise((r) => setTimeout(r, 1000));
    expect(await b.stats('paused')).toMatchObject({ ready: 2, inFlight: 0 });
    expect((await b.stats(resultQueueOf('paused'))).ready).toBe(0);
    const resume = await q(['queue', 'resume', 'paused']);
    expect(resume.code, resume.stderr).toBe(0);
    expect(resume.stdout).toBe('resumed queue "paused"\n');
    await waitFor(
      async () => (await b.stats(resultQueueOf('paused'))).ready === 2,
      20_000,
      'both results after resume',
    );
  });
});

describe('qtune job cancel', () => {
  function items(n: number, ms = 0): string {
    const path = join(env.dir, 'items.jsonl');
    writeFileSync(
      path,
      Array.from({ length: n }, (_, i) => JSON.stringify({ id: i, ms })).join('\n') + '\n',
    );
    return path;
  }

  it("removes a job's waiting tasks so they never run; the items stay as remaining", async () => {
    env = tempBroker();
    expect((await q(['job', 'submit', 'companies', '--input', items(6)])).code).toBe(0);
    const res = await q(['job', 'cancel', 'companies', '--json']);
    expect(res.code, res.stderr).toBe(0);
    expect(JSON.parse(res.stdout)).toEqual({
      job: 'companies',
      queue: 'companies',
      removed: 6,
      inFlight: 0,
      waited: true,
    });
    const status = await q(['job', 'status', 'companies', '--json']);
    expect(JSON.parse(status.stdout)).toMatchObject({ items: 6, queued: 0, remaining: 6 });
  });

  /** Job `slow` of `n` tasks sleeping `ms` each, and a worker holding one of them. */
  async function slowJobWithOneInFlight(n: number, ms: number) {
    expect((await q(['job', 'submit', 'slow', '--input', items(n, ms)])).code).toBe(0);
    const b = await broker();
    const worker = startCli([
      'worker',
      'slow',
      '--module',
      SLEEPY,
      '--prefetch',
      '1',
      '--broker',
      env!.url,
    ]);
    children.push(worker);
    await waitFor(async () => (await b.stats('slow')).inFlight === 1, 20_000, 'a task in flight');
    return { b, worker };
  }

  it('waits for the tasks in flight unless --now, and their results are kept', async () => {
    env = tempBroker();
    const { b, worker } = await slowJobWithOneInFlight(5, 1500);
    const res = await q(['job', 'cancel', 'slow', '--json']);
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout) as { removed: number; inFlight: number; waited: boolean };
    expect(out.inFlight).toBe(1);
    expect(out.removed).toBe(4);
    expect(out.waited).toBe(true);
    // The task in flight finished before cancel returned; nothing else runs.
    expect((await b.stats(resultQueueOf('slow'))).ready).toBe(1);
    expect(await b.stats('slow')).toMatchObject({ ready: 0, inFlight: 0 });
    worker.kill('SIGTERM');
    expect((await exited(worker)).code).toBe(0);
  });

  it('returns at once with --now while a task is in flight', async () => {
    env = tempBroker();
    await slowJobWithOneInFlight(3, 60_000);
    const res = await q(['job', 'cancel', 'slow', '--now']);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toBe(
      'job slow: 2 waiting task(s) removed from queue "slow", 1 in flight left to finish\n',
    );
  });

  it('refuses an unknown job, exit 4, with the closest name', async () => {
    env = tempBroker();
    expect((await q(['job', 'submit', 'companies', '--input', items(1)])).code).toBe(0);
    const res = await q(['job', 'cancel', 'compaines']);
    expect(res.code).toBe(4);
    expect(res.stderr).toContain('job "compaines" does not exist (did you mean "companies"?)');
  });
});
