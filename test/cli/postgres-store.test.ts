import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresAvailable, startPostgres, type PostgresServer } from '../support/postgres.mjs';
import { EmbeddedBroker } from '../../src/broker/embedded/index.js';
import { FIXTURES, assertBuilt, exited, runCli, startCli } from './helpers.js';
import { waitFor } from '../support/wait.js';

// The commands that use the store, pointed at a real PostgreSQL server with --store.
const available = postgresAvailable();
let server: PostgresServer | undefined;
let dir = '';

beforeAll(async () => {
  assertBuilt();
  dir = mkdtempSync(join(tmpdir(), 'qtune-cli-pg-'));
  if (available) server = await startPostgres();
}, 120_000);

afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe.skipIf(!available)('the CLI on a PostgreSQL store (--store postgres://...)', () => {
  it('runs an AutoML experiment to the end and reads it back', async () => {
    const store = await server!.createDatabase('experiments');
    const broker = join(dir, 'exp-broker.db');
    const spec = join(dir, 'spec.json');
    writeFileSync(
      spec,
      JSON.stringify({
        name: 'pg-exp',
        objective: { metric: 'loss' },
        space: { x: { type: 'float', low: 0, high: 1 } },
        sampler: { name: 'tpe', seed: 3 },
        maxTrials: 12,
        concurrency: 3,
        runner: { module: join(FIXTURES, 'trials/sleepy.mjs') },
      }),
    );
    const run = await runCli(
      ['experiment', 'run', spec, '--workers', '2', '--json', '--broker', broker, '--store', store],
      { timeoutMs: 120_000 },
    );
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout.trim().split('\n').at(-1)!)).toMatchObject({
      status: 'done',
      counts: { total: 12, running: 0, pending: 0 },
    });
    const trials = await runCli(['experiment', 'trials', 'pg-exp', '--json', '--store', store]);
    expect(trials.code, trials.stderr).toBe(0);
    const rows = JSON.parse(trials.stdout) as { number: number; status: string }[];
    expect(rows.every((r) => ['complete', 'pruned'].includes(r.status))).toBe(true);
    expect(rows.map((r) => r.number).sort((a, b) => a - b)).toEqual([...Array(12).keys()]);
  });

  it('submits a job, stores its results with the sink, and exports them', async () => {
    const store = await server!.createDatabase('jobs');
    const broker = join(dir, 'job-broker.db');
    const input = join(dir, 'items.csv');
    writeFileSync(
      input,
      'name,n\n' + Array.from({ length: 40 }, (_, i) => `co${i},${i}`).join('\n') + '\n',
    );
    const q = (args: string[]) => runCli([...args, '--broker', broker, '--store', store]);
    expect((await q(['job', 'submit', 'pgjob', '--input', input, '--key', 'name'])).code).toBe(0);
    const worker = startCli(['worker', 'pgjob', '--exec', 'cat', '--broker', broker]);
    const b = await EmbeddedBroker.open({ path: broker });
    try {
      await waitFor(async () => (await b.stats('pgjob.results')).ready === 40, 30_000, 'results');
    } finally {
      await b.close();
      worker.kill('SIGTERM');
    }
    expect((await exited(worker)).code).toBe(0);
    const sink = await q(['sink', 'pgjob', '--json']);
    expect(sink.code, sink.stderr).toBe(0);
    expect(JSON.parse(sink.stdout)).toMatchObject({ stored: 40, inserted: 40 });
    const status = JSON.parse((await q(['job', 'status', 'pgjob', '--json'])).stdout);
    expect(status).toMatchObject({ items: 40, done: 40, failed: 0, remaining: 0 });
    const exported = (await q(['job', 'export', 'pgjob'])).stdout.trim().split('\n');
    expect(exported).toHaveLength(40);
    expect(JSON.parse(exported[0]!)).toMatchObject({
      status: 'done',
      item: { name: 'co0', n: '0' },
      value: { name: 'co0', n: '0' },
    });
  });
});
