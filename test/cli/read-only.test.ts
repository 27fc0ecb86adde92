import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { CLI, assertBuilt, exited, runProcess, type RunResult } from './helpers.js';
import { waitFor } from '../support/wait.js';

let dirs: string[] = [];
beforeAll(() => assertBuilt());
afterEach(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs = [];
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'qtune-read-'));
  dirs.push(dir);
  return dir;
}

/** Runs qtune in `cwd` with no broker, store or project folder from the environment. */
function qtune(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return runProcess(process.execPath, [CLI, ...args], {
    cwd,
    env: {
      QTUNE_BROKER: undefined,
      QTUNE_STORE: undefined,
      QTUNE_HOME: undefined,
      QTUNE_LOG_LEVEL: 'warn',
      ...env,
    },
  });
}

async function queues(cwd: string): Promise<string[]> {
  const res = await qtune(cwd, ['status', '--all', '--json', '--wait', '0']);
  expect(res.code).toBe(0);
  return (JSON.parse(res.stdout) as { queues: { queue: string }[] }).queues.map((q) => q.queue);
}

/** A project folder with queue "prompts" (one task) and job "companies" (two items). */
async function project(): Promise<string> {
  const dir = tempDir();
  writeFileSync(join(dir, 'items.jsonl'), '{"name":"a"}\n{"name":"b"}\n');
  expect((await qtune(dir, ['publish', 'prompts', '--file', 'items.jsonl'])).code).toBe(0);
  const submit = await qtune(dir, ['job', 'submit', 'companies', '--input', 'items.jsonl']);
  expect(submit.code).toBe(0);
  return dir;
}

describe('read commands create nothing', () => {
  it('refuses an unknown queue in dlq and results, exit 4, suggesting the closest, and creates no queue', async () => {
    const dir = await project();
    const before = await queues(dir);
    const dlq = await qtune(dir, ['dlq', 'nonexist']);
    expect(dlq.code).toBe(4);
    expect(dlq.stderr).toContain('queue "nonexist" does not exist');
    const results = await qtune(dir, ['results', 'promts']);
    expect(results.code).toBe(4);
    expect(results.stderr).toContain('queue "promts" does not exist (did you mean "prompts"?)');
    const dlqTypo = await qtune(dir, ['dlq', 'prompt', '--requeue']);
    expect(dlqTypo.code).toBe(4);
    expect(dlqTypo.stderr).toContain('(did you mean "prompts"?)');
    expect(await queues(dir)).toEqual(before);
    expect(before).not.toContain('nonexist.dead');
    expect(before).not.toContain('promts.results');
  });

  it('reads an existing queue that has no dead letters without creating its dead-letter queue', async () => {
    const dir = await project();
    const dlq = await qtune(dir, ['dlq', 'prompts']);
    expect(dlq.code).toBe(0);
    expect(dlq.stdout).toContain('no dead letters in "prompts.dead"');
    expect(await queues(dir)).not.toContain('prompts.dead');
  });

  it('refuses a broker file that does not exist, exit 4, without creating its folder', async () => {
    const dir = tempDir();
    const path = join(dir, 'nonexistent/dir/broker.db');
    const res = await qtune(dir, ['status', '--broker', path]);
    expect(res.code).toBe(4);
    expect(res.stderr).toContain(`broker file "${path}" does not exist`);
    expect(existsSync(join(dir, 'nonexistent'))).toBe(false);
  });

  it('suggests the closest broker file of the folder', async () => {
    const dir = await project();
    const res = await qtune(dir, ['status', '--broker', join(dir, '.qtune/brokr.db')]);
    expect(res.code).toBe(4);
    expect(res.stderr).toContain(`(did you mean "${join(dir, '.qtune/broker.db')}"?)`);
  });

  it('refuses job status outside any project, exit 4, and creates no .qtune folder', async () => {
    const dir = tempDir();
    for (const args of [
      ['job', 'status', 'companies'],
      ['job', 'export', 'companies'],
      ['status'],
      ['results', 'prompts'],
      ['dlq', 'prompts'],
    ]) {
      const res = await qtune(dir, args);
      expect(res.code, args.join(' ')).toBe(4);
      expect(res.stderr).toContain(`no .qtune/ folder in "${dir}" or any folder above it`);
    }
    expect(readdirSync(dir)).toEqual([]);
  });

  it('finds the project from a folder below it, as git finds .git', async () => {
    const dir = await project();
    const below = join(dir, 'data/raw');
    mkdirSync(below, { recursive: true });
    const status = await qtune(below, ['job', 'status', 'companies', '--json']);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ name: 'companies', items: 2 });
    expect(existsSync(join(below, '.qtune'))).toBe(false);
    // A command that produces work uses the project above too.
    const publish = await qtune(below, ['publish', 'prompts', '--file', '-'], {});
    expect(publish.code).toBe(0);
    expect(existsSync(join(below, '.qtune'))).toBe(false);
  });

  it('uses the folder QTUNE_HOME names, from anywhere', async () => {
    const dir = await project();
    const elsewhere = tempDir();
    const res = await qtune(elsewhere, ['job', 'status', 'companies', '--json'], {
      QTUNE_HOME: join(dir, '.qtune'),
    });
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ name: 'companies', items: 2 });
    expect(readdirSync(elsewhere)).toEqual([]);
  });

  it('results --follow waits for a queue that does not exist yet, naming the closest one', async () => {
    const dir = await project();
    const follower = spawn(process.execPath, [CLI, 'results', 'prompt', '--follow'], {
      cwd: dir,
      env: { ...process.env, QTUNE_BROKER: '', QTUNE_HOME: '' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    follower.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    try {
      await waitFor(
        () => stderr.includes('queue "prompt" does not exist (did you mean "prompts"?)'),
        20_000,
        'the warning',
      );
      expect(stderr).toContain('waiting for it to appear');
      expect(follower.exitCode).toBeNull();
      expect(await queues(dir)).not.toContain('prompt.results');
    } finally {
      follower.kill('SIGTERM');
    }
    expect((await exited(follower)).code).toBe(0);
  });

  it('refuses an unknown job, exit 4, suggesting the closest job name', async () => {
    const dir = await project();
    for (const sub of ['status', 'export', 'retry-failed']) {
      const res = await qtune(dir, ['job', sub, 'compnaies']);
      expect(res.code, sub).toBe(4);
      expect(res.stderr).toContain('job "compnaies" does not exist (did you mean "companies"?)');
    }
  });
});
