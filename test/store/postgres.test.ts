import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, InputError, QtuneError } from '../../src/protocol/errors.js';
import { storeConformance } from './conformance/suite.js';
import { openStore } from '../../src/store/open.js';
import type { Store } from '../../src/store/contract.js';
import { PostgresStore } from '../../src/store/postgres/index.js';
import { postgresAvailable, startPostgres } from '../support/postgres.mjs';
import type { PostgresServer } from '../support/postgres.mjs';
import { freePort } from '../support/rabbitmq.mjs';

// One PostgreSQL server for the file. The suite shares one database (every test uses its own
// names); it collates with an ICU locale, so ordering that relied on the database's locale
// instead of byte order would show. Other tests get fresh databases.
const available = postgresAvailable();
let server: PostgresServer | undefined;
let suiteUrl = '';

beforeAll(async () => {
  if (!available) return;
  server = await startPostgres();
  suiteUrl = await server.createDatabase('conformance', { icuLocale: 'en-US' });
}, 120_000);

afterAll(async () => {
  await server?.stop();
}, 60_000);

async function freshDatabase(): Promise<string> {
  return server!.createDatabase(`fresh_${randomUUID().replace(/-/g, '').slice(0, 12)}`);
}

/** Runs `sql` on the database at `url` with a plain client. */
async function sql<R extends pg.QueryResultRow>(
  url: string,
  text: string,
  values: unknown[] = [],
): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

/** The URL with a password added (the test server trusts every local connection). */
function withPassword(url: string, password: string): string {
  return url.replace('postgres://qtune@', `postgres://qtune:${password}@`);
}

const title = available
  ? 'PostgreSQL store'
  : 'PostgreSQL store (skipped: no PostgreSQL server installed, e.g. Debian package postgresql)';

describe.skipIf(!available)(title, () => {
  storeConformance('postgres', () => PostgresStore.open(suiteUrl));

  describe('postgres specifics', () => {
    const opened: Store[] = [];
    afterAll(async () => {
      await Promise.all(opened.map((s) => s.close()));
    });

    it('opens through openStore with a postgres:// URL and hides the password', async () => {
      const url = withPassword(suiteUrl, 's3cret');
      const store = await openStore(url);
      opened.push(store);
      expect(store).toBeInstanceOf(PostgresStore);
      expect(store.kind).toBe('postgres');
      expect(store.location).toBe(url.replace('s3cret', '***'));
      const alias = await openStore(suiteUrl.replace('postgres://', 'postgresql://'));
      opened.push(alias);
      expect(alias.kind).toBe('postgres');
    });

    it('reports a server that cannot be reached as StoreUnavailable naming the URL without its password', async () => {
      const port = await freePort();
      const url = `postgres://qtune:s3cret@127.0.0.1:${port}/qtune`;
      const err = await PostgresStore.open(url).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(QtuneError);
      expect((err as QtuneError).code).toBe(ErrorCode.StoreUnavailable);
      expect((err as Error).message).toContain(
        `store "postgres://qtune:***@127.0.0.1:${port}/qtune"`,
      );
      expect((err as Error).message).not.toContain('s3cret');
    });

    it('reports a missing database as StoreUnavailable', async () => {
      const url = suiteUrl.replace(/\/conformance$/, '/no_such_database');
      const err = await PostgresStore.open(url).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as QtuneError).code).toBe(ErrorCode.StoreUnavailable);
      expect((err as Error).message).toContain('no_such_database');
    });

    it('rejects a URL that is not a postgres:// URL as bad input', async () => {
      await expect(PostgresStore.open('mysql://root@localhost/db')).rejects.toBeInstanceOf(
        InputError,
      );
    });

    it('creates its tables when several stores open a fresh database at once', async () => {
      const url = await freshDatabase();
      const stores = await Promise.all([1, 2, 3, 4].map(() => PostgresStore.open(url)));
      opened.push(...stores);
      const tables = await sql<{ table_name: string }>(
        url,
        `SELECT table_name FROM information_schema.tables
         WHERE table_schema = current_schema() ORDER BY table_name`,
      );
      expect(tables.map((t) => t.table_name)).toEqual([
        'qtune_experiments',
        'qtune_history',
        'qtune_job_items',
        'qtune_jobs',
        'qtune_reports',
        'qtune_trials',
      ]);
      await stores[0]!.experiments.createExperiment('exp', {});
      expect((await stores[3]!.experiments.getExperiment('exp'))?.status).toBe('running');
    });

    it('creates one result table when several stores create it at once', async () => {
      const url = await freshDatabase();
      const stores = await Promise.all([1, 2, 3].map(() => PostgresStore.open(url)));
      opened.push(...stores);
      await Promise.all(stores.map((s) => s.results.ensureResultTable('answers')));
      const counts = await Promise.all(
        stores.map((s, i) =>
          s.results.upsertResults('answers', [
            {
              id: `r${i}`,
              taskId: `t${i}`,
              ok: true,
              host: 'h',
              pid: 1,
              workerId: 'w',
              attempt: 1,
              durationMs: 1,
              startedAt: 1,
              finishedAt: 2,
            },
          ]),
        ),
      );
      expect(counts).toEqual([1, 2, 3].map(() => ({ inserted: 1, updated: 0 })));
      expect((await stores[0]!.results.resultCounts('answers')).total).toBe(3);
    });

    it('gives result tables the documented SQL columns and a finished_at index', async () => {
      const url = await freshDatabase();
      const store = await PostgresStore.open(url);
      opened.push(store);
      await store.results.ensureResultTable('Answers');
      const columns = await sql<{ column_name: string; data_type: string; is_nullable: string }>(
        url,
        `SELECT column_name, data_type, is_nullable FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = 'Answers' ORDER BY ordinal_position`,
      );
      expect(columns.map((c) => [c.column_name, c.data_type, c.is_nullable])).toEqual([
        ['id', 'text', 'NO'],
        ['task_id', 'text', 'NO'],
        ['key', 'text', 'YES'],
        ['ok', 'boolean', 'NO'],
        ['value', 'jsonb', 'YES'],
        ['error_code', 'text', 'YES'],
        ['error_message', 'text', 'YES'],
        ['host', 'text', 'NO'],
        ['pid', 'integer', 'NO'],
        ['worker_id', 'text', 'NO'],
        ['gpu', 'text', 'YES'],
        ['price_per_hour', 'double precision', 'YES'],
        ['attempt', 'integer', 'NO'],
        ['duration_ms', 'bigint', 'NO'],
        ['started_at', 'bigint', 'NO'],
        ['finished_at', 'bigint', 'NO'],
        ['stored_at', 'bigint', 'NO'],
        ['writes', 'integer', 'NO'],
      ]);
      const indexes = await sql<{ indexdef: string }>(
        url,
        `SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'Answers'`,
      );
      expect(indexes.some((i) => /\(finished_at\)$/.test(i.indexdef))).toBe(true);
    });

    it('lets SQL read result rows with JSON values and epoch milliseconds', async () => {
      const url = await freshDatabase();
      const store = await PostgresStore.open(url);
      opened.push(store);
      await store.results.upsertResults(
        'scores',
        [
          {
            id: 'a',
            taskId: 'ta',
            ok: true,
            value: { score: 0.75, label: 'cat' },
            host: 'h',
            pid: 1,
            workerId: 'w',
            attempt: 1,
            durationMs: 12,
            startedAt: 1_700_000_000_000,
            finishedAt: 1_700_000_000_012,
          },
        ],
        1_700_000_000_100,
      );
      const rows = await sql<{ label: string; score: number; finished: Date }>(
        url,
        `SELECT value->>'label' AS label, (value->>'score')::float8 AS score,
                to_timestamp(finished_at / 1000.0) AS finished
         FROM scores WHERE ok`,
      );
      expect(rows).toHaveLength(1);
      expect([rows[0]!.label, rows[0]!.score]).toEqual(['cat', 0.75]);
      expect(rows[0]!.finished.getTime()).toBe(1_700_000_000_012);
    });

    it('rejects calls after close with StoreState', async () => {
      const store = await PostgresStore.open(suiteUrl);
      await store.close();
      const err = await store.jobs.listJobs().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as QtuneError).code).toBe(ErrorCode.StoreState);
      await store.close(); // a second close is harmless
    });
  });
});
