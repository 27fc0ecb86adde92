import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { storeConformance } from '../../src/store/conformance/suite.js';
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

  it('new tables are rowid tables with a unique id, so hashed ids do not scatter rows', async () => {
    const path = join(dir, 'layout.db');
    const store = new SqliteStore({ path });
    try {
      await store.upsertResults('fresh', [row('b'), row('a')]);
      expect(ddlOf(path, 'fresh')).not.toMatch(/WITHOUT ROWID/i);
      await expect(store.upsertResults('fresh', [row('a')])).resolves.toEqual({
        inserted: 0,
        updated: 1,
      });
      expect((await store.listResults('fresh')).map((r) => r.id)).toEqual(['a', 'b']);
    } finally {
      await store.close();
    }
  });

  it('a table made WITHOUT ROWID by an earlier version is upserted, listed and counted as before', async () => {
    const path = join(dir, 'old-layout.db');
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.exec(OLD_LAYOUT('legacy'));
    db.close();
    const store = new SqliteStore({ path });
    try {
      expect(await store.upsertResults('legacy', [row('x'), row('y', false)])).toEqual({
        inserted: 2,
        updated: 0,
      });
      // A failed result never replaces a successful one; a success replaces a failure.
      expect(await store.upsertResults('legacy', [row('x', false), row('y')])).toEqual({
        inserted: 0,
        updated: 2,
      });
      const rows = await store.getResults('legacy', ['x', 'y']);
      expect(rows.map((r) => [r.id, r.ok, r.writes])).toEqual([
        ['x', true, 1],
        ['y', true, 2],
      ]);
      expect(await store.resultCounts('legacy')).toEqual({ total: 2, ok: 2, failed: 0 });
      expect(ddlOf(path, 'legacy')).toMatch(/WITHOUT ROWID/i);
    } finally {
      await store.close();
    }
  });
});
