import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { storeConformance } from './conformance/suite.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';

// One database file for the suite (every test uses its own names); each handle is a separate
// connection to it, as another process would open it.
let dir = '';

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'qtune-store-'));
});

storeConformance(
  'sqlite',
  async () => new SqliteStore({ path: join(dir, 'store.db') }),
  () => rmSync(dir, { recursive: true, force: true }),
);

/** The CREATE statement of `table` in the file at `path`. */
function ddlOf(path: string, table: string): string {
  const db = new Database(path, { readonly: true });
  try {
    return db
      .prepare('SELECT sql FROM sqlite_master WHERE type = ? AND name = ?')
      .pluck()
      .get('table', table) as string;
  } finally {
    db.close();
  }
}

describe('sqlite result tables', () => {
  const OLD_LAYOUT = (t: string) => `
CREATE TABLE "${t}" (
  id TEXT PRIMARY KEY, task_id TEXT NOT NULL, key TEXT, ok INTEGER NOT NULL, value TEXT,
  error_code TEXT, error_message TEXT, host TEXT NOT NULL, pid INTEGER NOT NULL,
  worker_id TEXT NOT NULL, gpu TEXT, price_per_hour REAL, attempt INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER NOT NULL,
  stored_at INTEGER NOT NULL, writes INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;
CREATE INDEX "${t}_finished_at" ON "${t}"(finished_at);`;

  function row(id: string, ok = true) {
    return {
      id,
      taskId: `task-${id}`,
      key: id,
      ok,
      ...(ok ? { value: { n: id } } : { errorCode: 'HANDLER_FAILED', errorMessage: 'boom' }),
      host: 'h',
      pid: 1,
      workerId: 'w',
      attempt: 1,
      durationMs: 5,
      startedAt: 1000,
      finishedAt: 1005,
    };
  }

  it('new tables are rowid tables with a unique id, so hashed ids do not scatter rows', async () => {
    const path = join(dir, 'layout.db');
    const store = new SqliteStore({ path });
    try {
      await store.results.upsertResults('fresh', [row('b'), row('a')]);
      expect(ddlOf(path, 'fresh')).not.toMatch(/WITHOUT ROWID/i);
      await expect(store.results.upsertResults('fresh', [row('a')])).resolves.toEqual({
        inserted: 0,
        updated: 1,
      });
      expect((await store.results.listResults('fresh')).map((r) => r.id)).toEqual(['a', 'b']);
    } finally {
      await store.close();
    }
  });

  it('a new store file has 16 KiB pages; a file made with 4 KiB pages keeps them and works as before', async () => {
    const pageSize = (path: string) => {
      const db = new Database(path, { readonly: true });
      try {
        return db.pragma('page_size', { simple: true });
      } finally {
        db.close();
      }
    };
    const fresh = join(dir, 'pages-new.db');
    const store = new SqliteStore({ path: fresh });
    await store.results.upsertResults('t', [row('a')]);
    await store.close();
    expect(pageSize(fresh)).toBe(16384);

    const old = join(dir, 'pages-old.db');
    const db = new Database(old);
    db.pragma('page_size = 4096');
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE before_qtune (x INTEGER)');
    db.close();
    const reopened = new SqliteStore({ path: old });
    try {
      const many = Array.from({ length: 3000 }, (_, i) => row(`k${i}`));
      expect(await reopened.results.upsertResults('t', many)).toEqual({
        inserted: 3000,
        updated: 0,
      });
      expect(await reopened.results.resultCounts('t')).toEqual({
        total: 3000,
        ok: 3000,
        failed: 0,
      });
    } finally {
      await reopened.close();
    }
    expect(pageSize(old)).toBe(4096);
  });

  it('a table made WITHOUT ROWID by an earlier version is upserted, listed and counted as before', async () => {
    const path = join(dir, 'old-layout.db');
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.exec(OLD_LAYOUT('legacy'));
    db.close();
    const store = new SqliteStore({ path });
    try {
      expect(await store.results.upsertResults('legacy', [row('x'), row('y', false)])).toEqual({
        inserted: 2,
        updated: 0,
      });
      // A failed result never replaces a successful one; a success replaces a failure.
      expect(await store.results.upsertResults('legacy', [row('x', false), row('y')])).toEqual({
        inserted: 0,
        updated: 2,
      });
      const rows = await store.results.getResults('legacy', ['x', 'y']);
      expect(rows.map((r) => [r.id, r.ok, r.writes])).toEqual([
        ['x', true, 1],
        ['y', true, 2],
      ]);
      expect(await store.results.resultCounts('legacy')).toEqual({ total: 2, ok: 2, failed: 0 });
      expect(ddlOf(path, 'legacy')).toMatch(/WITHOUT ROWID/i);
    } finally {
      await store.close();
    }
  });
});

describe('sqlite store schema', () => {
  const V1_JOB_ITEMS = `
CREATE TABLE qtune_job_items (
  job TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, item TEXT NOT NULL,
  payload TEXT NOT NULL, state TEXT NOT NULL, task_id TEXT, PRIMARY KEY (job, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX qtune_job_items_seq ON qtune_job_items(job, seq);
CREATE INDEX qtune_job_items_state ON qtune_job_items(job, state, seq);`;

  it('moves the job items of a version 1 store into a rowid table, keeping every item and its order', async () => {
    const path = join(dir, 'v1.db');
    // A version 1 store: today's tables, with job items as version 1 made them.
    await new SqliteStore({ path }).close();
    const db = new Database(path);
    db.exec(`DROP TABLE qtune_job_items; ${V1_JOB_ITEMS}`);
    db.exec(
      `INSERT INTO qtune_jobs VALUES ('j', 'jq', 'jt', '["k"]', 1, 1);
       INSERT INTO qtune_job_items VALUES
         ('j', 'ff', 1, '{"k":"a"}', '{"k":"a"}', 'queued', 't1'),
         ('j', '0a', 2, '{"k":"b"}', '{"k":"b"}', 'new', NULL),
         ('j', '7c', 3, '{"k":"c"}', '{"k":"c"}', 'new', NULL);`,
    );
    db.pragma('user_version = 1');
    db.close();

    const store = new SqliteStore({ path });
    try {
      const items = await store.jobs.listJobItems('j');
      expect(items.map((i) => [i.id, i.seq, i.state, i.taskId ?? null, i.item])).toEqual([
        ['ff', 1, 'queued', 't1', { k: 'a' }],
        ['0a', 2, 'new', null, { k: 'b' }],
        ['7c', 3, 'new', null, { k: 'c' }],
      ]);
      expect((await store.jobs.unpublishedItems('j', 10)).map((i) => i.id)).toEqual(['0a', '7c']);
      // Re-adding known items adds nothing; a new one comes last.
      expect(
        await store.jobs.addJobItems('j', [
          { id: '0a', item: { k: 'b' }, payload: { k: 'b' } },
          { id: '11', item: { k: 'd' }, payload: { k: 'd' } },
        ]),
      ).toBe(1);
      expect(await store.jobs.jobItemCounts('j')).toEqual({ total: 4, new: 3, queued: 1 });
      expect((await store.jobs.listJobItems('j')).at(-1)).toMatchObject({ id: '11', seq: 4 });
    } finally {
      await store.close();
    }
    const check = new Database(path, { readonly: true });
    try {
      expect(check.pragma('user_version', { simple: true })).toBe(2);
      const indexes = check
        .prepare(
          "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'qtune_job_items' AND sql IS NOT NULL ORDER BY name",
        )
        .pluck()
        .all();
      expect(indexes).toEqual(['qtune_job_items_seq', 'qtune_job_items_state']);
      expect(
        check.prepare("SELECT name FROM sqlite_master WHERE name = 'qtune_job_items_v2'").get(),
      ).toBeUndefined();
    } finally {
      check.close();
    }
    expect(ddlOf(path, 'qtune_job_items')).not.toMatch(/WITHOUT ROWID/i);
  });

  it('refuses a store of a newer schema version, naming both versions', async () => {
    const path = join(dir, 'future.db');
    const db = new Database(path);
    db.pragma('user_version = 99');
    db.close();
    expect(() => new SqliteStore({ path })).toThrow(/schema version 99 is newer .*\(2\)/);
  });
});
