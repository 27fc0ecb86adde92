import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedBroker } from '../../src/broker/embedded/index.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { experimentQueues } from '../../src/protocol/trial.js';
import {
  assertBuilt,
  CLI,
  exited,
  FIXTURES,
  killAll,
  runCli,
  runProcess,
  startCli,
  tempBroker,
} from './helpers.js';
import { waitFor } from '../support/wait.js';

beforeAll(assertBuilt);

const cleanups: (() => void)[] = [];
const children: ReturnType<typeof startCli>[] = [];
afterEach(() => {
  // A test that failed half-way must not leave its scheduler or workers running.
  killAll(children.splice(0));
  for (const c of cleanups.splice(0)) c();
});

/** startCli, remembered so that afterEach kills it if the test did not end it. */
function spawnCli(...args: Parameters<typeof startCli>): ReturnType<typeof startCli> {
  const child = startCli(...args);
  children.push(child);
  return child;
}

function setup(spec: Record<string, unknown>) {
  const env = tempBroker();
  cleanups.push(env.cleanup);
  const specPath = join(env.dir, 'spec.json');
  writeFileSync(
    specPath,
    JSON.stringify({
      objective: { metric: 'loss' },
      space: {
        x: { type: 'float', low: 0, high: 1 },
        k: { type: 'categorical', choices: ['a', 'b'] },
      },
      sampler: { name: 'tpe', seed: 3 },
      pruner: { name: 'median', options: { startupTrials: 3 } },
      concurrency: 4,
      runner: { module: join(FIXTURES, 'trials/sleepy.mjs') },
      ...spec,
    }),
  );
  const store = join(env.dir, 'experiments.db');
  const args = ['--broker', env.url];
  const storeArgs = ['--store', store];
  return { env, specPath, store, args, storeArgs };
}

async function finishedCount(store: string, name: string): Promise<number> {
  const s = new SqliteStore({ path: store });
  try {
    const c = await s.experiments.counts(name);
    return c.complete + c.pruned + c.failed;
  } catch {
    return 0;
  } finally {
    await s.close();
  }
}

async function experimentExists(store: string, name: string): Promise<boolean> {
  const s = new SqliteStore({ path: store });
  try {
    return (await s.experiments.getExperiment(name)) !== undefined;
  } finally {
    await s.close();
  }
}

async function waitFinished(
  store: string,
  name: string,
  n: number,
  timeoutMs = 30_000,
): Promise<number> {
  return waitFor(
    async () => {
      const c = await finishedCount(store, name);
      return c >= n ? c : undefined;
    },
    timeoutMs,
    `${n} finished trials of "${name}"`,
  );
}

/** PIDs of processes whose command line mentions `text` (our temp dir). */
function processesMentioning(text: string): number[] {
  try {
    return execFileSync('pgrep', ['-f', text], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number)
      .filter((p) => p !== process.pid);
  } catch {
    return [];
  }
}

describe('qtune experiment', () => {
  it('survives kill -9 of the scheduler three times (once during start-up): resume finishes exactly maxTrials trials, none counted twice', async () => {
    const { env, specPath, store, args, storeArgs } = setup({ name: 'crashy', maxTrials: 60 });
    // First at an arbitrary early moment (start-up, first publishes), then mid-run twice.
    for (const killAt of [
      { afterMs: 150 + Math.floor(Math.random() * 500) },
      { finished: 10 },
      { finished: 30 },
    ]) {
      const exists = await experimentExists(store, 'crashy');
      const run = exists
        ? spawnCli([...args, 'experiment', ...storeArgs, 'resume', 'crashy', '--workers', '2'])
        : spawnCli([...args, 'experiment', ...storeArgs, 'run', specPath, '--workers', '2']);
      if ('afterMs' in killAt) await sleep(killAt.afterMs);
      else await waitFinished(store, 'crashy', killAt.finished);
      run.kill('SIGKILL');
      await exited(run);
      // Its local workers see their stdin close and stop by themselves.
      await waitFor(
        () => processesMentioning(env.dir).length === 0,
        15_000,
        'the local workers to stop',
      );
      expect(processesMentioning(env.dir)).toEqual([]);
    }
    const before = await finishedCount(store, 'crashy');
    expect(before).toBeGreaterThanOrEqual(30);
    expect(before).toBeLessThan(60);
    const t0 = Date.now();
    const last = await runCli(
      [
        ...args,
        '--log-level',
        'warn',
        'experiment',
        ...storeArgs,
        'resume',
        'crashy',
        '--workers',
        '2',
        '--json',
      ],
      {
        timeoutMs: 60_000,
      },
    );
    expect(last.stderr).toBe('');
    // What the crashed schedulers held unsettled comes back after the short scheduler lease,
    // not after a worker's 30 s one.
    const resumeMs = Date.now() - t0;
    process.stderr.write(`crash test: last resume ${resumeMs} ms, ${last.stdout.trim()}\n`);
    expect(resumeMs).toBeLessThan(25_000);
    expect(last.code).toBe(0);
    const summary = JSON.parse(last.stdout) as {
      status: string;
      counts: { [k in 'running' | 'pending' | 'complete' | 'pruned' | 'failed' | 'total']: number };
    };
    expect(summary.status).toBe('done');
    expect(summary.counts.total).toBe(60);
    expect(summary.counts.running + summary.counts.pending).toBe(0);
    expect(summary.counts.complete + summary.counts.pruned + summary.counts.failed).toBe(60);

    const s = new SqliteStore({ path: store });
    const trials = await s.experiments.listTrials('crashy');
    const finishes = (await s.experiments.history('crashy')).filter((h) => h.kind === 'finish');
    await s.close();
    expect(trials.map((t) => t.number)).toEqual([...Array(60).keys()]);
    expect(finishes).toHaveLength(60);
    expect(new Set(finishes.map((h) => h.number)).size).toBe(60);
    expect(processesMentioning(env.dir)).toEqual([]);
  }, 120_000);

  it('completes the trial of a worker killed with SIGKILL mid-trial on another worker', async () => {
    const { env, specPath, store, args, storeArgs } = setup({
      name: 'workerdeath',
      maxTrials: 12,
      lease: '1500ms',
      pruner: { name: 'none' },
    });
    const marks = join(env.dir, 'marks');
    const scheduler = spawnCli([
      ...args,
      'experiment',
      ...storeArgs,
      'run',
      specPath,
      '--workers',
      '0',
    ]);
    const workerEnv = { TRIAL_STEP_MS: '150', TRIAL_MARKS: marks };
    const a = spawnCli(
      [...args, 'worker', '--experiment', specPath, '--concurrency', '2'],
      workerEnv,
    );
    const b = spawnCli(
      [...args, 'worker', '--experiment', specPath, '--concurrency', '2'],
      workerEnv,
    );
    // Wait until worker a is in the middle of a trial, then kill it.
    await waitFor(
      () => readdirSync(marks).some((m) => m.split('-')[1] === String(a.pid)),
      20_000,
      'worker a to start a trial',
    );
    a.kill('SIGKILL');
    const killed = readdirSync(marks)
      .filter((m) => m.split('-')[1] === String(a.pid))
      .map((m) => Number(m.split('-')[0]));
    expect(killed.length).toBeGreaterThan(0);
    const done = await exited(scheduler);
    expect(done.code).toBe(0);
    b.kill('SIGTERM');
    await exited(b);
    const s = new SqliteStore({ path: store });
    const counts = await s.experiments.counts('workerdeath');
    const trials = await s.experiments.listTrials('workerdeath');
    await s.close();
    expect(counts).toMatchObject({ complete: 12, failed: 0, total: 12 });
    for (const n of killed) {
      const t = trials.find((x) => x.number === n)!;
      expect(t.status).toBe('complete');
      expect(t.worker?.pid).toBe(b.pid);
      expect(t.attempt).toBe(2);
    }
  }, 60_000);

  it('stops on request: no new trials, running ones told to stop, status stopped, then resumable', async () => {
    const { specPath, store, args, storeArgs } = setup({
      name: 'stoppable',
      maxTrials: 200,
      pruner: { name: 'none' },
    });
    const run = spawnCli([...args, 'experiment', ...storeArgs, 'run', specPath, '--workers', '2'], {
      TRIAL_STEP_MS: '100',
    });
    await waitFinished(store, 'stoppable', 4);
    const stop = await runCli([
      ...args,
      'experiment',
      ...storeArgs,
      'stop',
      'stoppable',
      '--wait',
      '--timeout',
      '20s',
    ]);
    expect(stop.stderr).toBe('');
    expect(stop.code).toBe(0);
    expect((await exited(run)).code).toBe(0);
    const s = new SqliteStore({ path: store });
    const counts = await s.experiments.counts('stoppable');
    const pruned = await s.experiments.listTrials('stoppable', ['pruned']);
    expect((await s.experiments.getExperiment('stoppable'))?.status).toBe('stopped');
    await s.close();
    expect(counts.running + counts.pending).toBe(0);
    expect(counts.total).toBeLessThan(200);
    // The trials running at the stop were told to stop at their next report.
    expect(pruned.length).toBeGreaterThan(0);
    const again = await runCli([...args, 'experiment', ...storeArgs, 'stop', 'stoppable']);
    expect(again.stdout).toMatch(/already stopped/);
  }, 60_000);

  it('stop --wait gives up with exit code 1 when no scheduler runs', async () => {
    const { specPath, store, args, storeArgs } = setup({ name: 'orphan', maxTrials: 2 });
    const run = spawnCli([...args, 'experiment', ...storeArgs, 'run', specPath, '--workers', '0']);
    await waitFor(() => experimentExists(store, 'orphan'), 10_000, 'the experiment to be stored');
    run.kill('SIGKILL');
    await exited(run);
    const stop = await runCli([
      ...args,
      'experiment',
      ...storeArgs,
      'stop',
      'orphan',
      '--wait',
      '--timeout',
      '300ms',
    ]);
    expect(stop.code).toBe(1);
    expect(stop.stderr).toMatch(/did not stop within 300 ms; is its scheduler running/);
  }, 30_000);

  it('rejects a bad spec with exit code 2 and names the parameter', async () => {
    const { specPath, args, storeArgs } = setup({
      name: 'bad',
      maxTrials: 5,
      space: { lr: { type: 'float', low: 1, high: 0.1 } },
    });
    const r = await runCli([...args, 'experiment', ...storeArgs, 'run', specPath]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/parameter "lr": low \(1\) is above high \(0\.1\)/);
  });

  it('refuses a spec the sampler rejects with exit code 2 and stores nothing, so the fixed spec then runs', async () => {
    const { specPath, store, args, storeArgs } = setup({
      name: 'cma',
      maxTrials: 2,
      sampler: { name: 'cmaes' },
    });
    const r = await runCli([...args, 'experiment', ...storeArgs, 'run', specPath]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /CMA-ES needs float or int parameters without conditions; "k" is categorical/,
    );
    expect(await experimentExists(store, 'cma')).toBe(false);

    const spec = JSON.parse(readFileSync(specPath, 'utf8'));
    writeFileSync(specPath, JSON.stringify({ ...spec, sampler: { name: 'random', seed: 1 } }));
    const fixed = await runCli(
      [...args, 'experiment', ...storeArgs, 'run', specPath, '--workers', '1'],
      { timeoutMs: 60_000 },
    );
    expect(fixed.stderr).toBe('');
    expect(fixed.code).toBe(0);
    expect(fixed.stdout).toMatch(/experiment cma: done\n {2}trials: 2 finished of 2/);
  }, 60_000);

  it('refuses to resume an experiment whose scheduler is still attached, and leaves it running', async () => {
    const { env, specPath, store, args, storeArgs } = setup({ name: 'twice', maxTrials: 4 });
    // A scheduler with no workers: it waits, attached, with its trials queued.
    const first = spawnCli([
      ...args,
      'experiment',
      ...storeArgs,
      'run',
      specPath,
      '--workers',
      '0',
    ]);
    const broker = await EmbeddedBroker.open({ path: env.url });
    try {
      await waitFor(
        async () => {
          try {
            return (await broker.stats(experimentQueues('twice').reports)).consumers === 1;
          } catch {
            return false;
          }
        },
        20_000,
        'the first scheduler attached',
      );
    } finally {
      await broker.close();
    }
    const second = await runCli([...args, 'experiment', ...storeArgs, 'resume', 'twice']);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/experiment "twice" already has a scheduler attached/);
    expect(first.exitCode).toBe(null);
    // Workers attached afterwards finish it with the first scheduler.
    const worker = spawnCli([...args, 'worker', '--experiment', specPath, '--concurrency', '4']);
    expect((await exited(first)).code).toBe(0);
    worker.kill('SIGTERM');
    await exited(worker);
    expect(await finishedCount(store, 'twice')).toBe(4);
  }, 90_000);

  it('exits 2 for bad usage of every experiment subcommand', async () => {
    const { args, storeArgs } = setup({ name: 'usage', maxTrials: 1 });
    const bad = [
      ['run'],
      ['run', 'spec.json', '--bogus'],
      ['resume'],
      ['status', '--bogus'],
      ['best'],
      ['trials', 'x', '--format', 'xml'],
      ['export', 'x', '--format', 'xml'],
      ['stop', 'x', '--timeout', 'soon'],
      ['schema', '--bogus'],
    ];
    for (const argv of bad) {
      const r = await runCli([...args, 'experiment', ...storeArgs, ...argv]);
      expect({ argv, code: r.code }).toEqual({ argv, code: 2 });
      expect(r.stderr).toMatch(/error: /);
    }
  }, 60_000);

  it('delete removes a finished experiment and its queues; refuses a running one; an unknown name exits 4 with a suggestion', async () => {
    const { env, specPath, store, args, storeArgs } = setup({ name: 'doomed', maxTrials: 2 });
    const run = await runCli(
      [...args, 'experiment', ...storeArgs, 'run', specPath, '--workers', '1'],
      { timeoutMs: 60_000 },
    );
    expect(run.code).toBe(0);

    const typo = await runCli([...args, 'experiment', ...storeArgs, 'delete', 'domed']);
    expect(typo.code).toBe(4);
    expect(typo.stderr).toMatch(/experiment "domed" does not exist \(did you mean "doomed"\?\)/);

    const s = new SqliteStore({ path: store });
    await s.experiments.setExperimentStatus('doomed', 'running');
    await s.close();
    const busy = await runCli([...args, 'experiment', ...storeArgs, 'delete', 'doomed']);
    expect(busy.code).toBe(2);
    expect(busy.stderr).toMatch(/is running: stop it first .*or pass --force/);
    expect(await experimentExists(store, 'doomed')).toBe(true);

    const queuesNamed = async (text: string): Promise<string[]> => {
      const broker = await EmbeddedBroker.open({ path: env.url });
      try {
        return (await broker.listQueues()).filter((n) => n.includes(text));
      } finally {
        await broker.close();
      }
    };
    expect(await queuesNamed('doomed')).toContain('qtune.exp.doomed');
    const del = await runCli([
      ...args,
      'experiment',
      ...storeArgs,
      'delete',
      'doomed',
      '--force',
      '--json',
    ]);
    expect(del.stderr).toBe('');
    expect(del.code).toBe(0);
    expect(JSON.parse(del.stdout)).toMatchObject({ experiment: 'doomed', trials: 2 });
    expect(await experimentExists(store, 'doomed')).toBe(false);
    expect(await queuesNamed('doomed')).toEqual([]);
    for (const sub of ['status', 'best', 'delete']) {
      const gone = await runCli([...args, 'experiment', ...storeArgs, sub, 'doomed']);
      expect({ sub, code: gone.code }).toEqual({ sub, code: 4 });
    }
  }, 60_000);

  it('answers status and best of an unknown experiment with exit code 4, creating nothing', async () => {
    const env = tempBroker();
    cleanups.push(env.cleanup);
    for (const argv of [
      ['status', 'nope'],
      ['best', 'nope'],
      ['trials', 'nope'],
      ['stop', 'nope'],
      ['delete', 'nope'],
      ['resume', 'nope'],
    ]) {
      const r = await runProcess(process.execPath, [CLI, 'experiment', ...argv], { cwd: env.dir });
      expect({ argv, code: r.code }).toEqual({ argv, code: 4 });
      expect(r.stderr).toMatch(/experiment "nope" does not exist/);
    }
    const all = await runProcess(process.execPath, [CLI, 'experiment', 'status', '--json'], {
      cwd: env.dir,
    });
    expect(all.code).toBe(0);
    expect(JSON.parse(all.stdout)).toEqual([]);
    expect(readdirSync(env.dir)).toEqual(['marks']);
  }, 60_000);

  it('reports status, best, trials and export of a finished experiment', async () => {
    const { specPath, args, storeArgs } = setup({ name: 'small', maxTrials: 8 });
    const run = await runCli(
      [...args, 'experiment', ...storeArgs, 'run', specPath, '--workers', '1'],
      { timeoutMs: 60_000 },
    );
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/experiment small: done\n {2}trials: 8 finished of 8/);
    const status = JSON.parse(
      (await runCli([...args, 'experiment', ...storeArgs, 'status', 'small', '--json'])).stdout,
    );
    expect(status).toMatchObject({
      name: 'small',
      status: 'done',
      finished: 8,
      maxTrials: 8,
      running: 0,
    });
    const trials = JSON.parse(
      (await runCli([...args, 'experiment', ...storeArgs, 'trials', 'small', '--json'])).stdout,
    ) as {
      status: string;
      value: number | null;
    }[];
    expect(trials).toHaveLength(8);
    const best = JSON.parse(
      (await runCli([...args, 'experiment', ...storeArgs, 'best', 'small', '--json'])).stdout,
    );
    const completeValues = trials.filter((t) => t.status === 'complete').map((t) => t.value!);
    expect(best.value).toBe(Math.min(...completeValues));
    expect(status.best.value).toBe(best.value);
    const csv = (
      await runCli([...args, 'experiment', ...storeArgs, 'export', 'small', '--format', 'csv'])
    ).stdout
      .trim()
      .split('\n');
    expect(csv[0]).toBe(
      'number,status,value,step,param_x,param_k,error,attempt,host,gpu,durationMs',
    );
    expect(csv).toHaveLength(9);
    const doc = JSON.parse(
      (await runCli([...args, 'experiment', ...storeArgs, 'export', 'small'])).stdout,
    );
    expect(doc.trials).toHaveLength(8);
    expect(doc.trials[0].reports.length).toBeGreaterThan(0);
    const missing = await runCli([...args, 'experiment', ...storeArgs, 'status', 'nope']);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toMatch(/experiment "nope" does not exist/);
  }, 60_000);
});
