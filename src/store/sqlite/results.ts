import type Database from 'better-sqlite3';
import {
  checkTableName,
  lastOfEachIdSorted,
  type ListResultsOptions,
  type ResultCounts,
  type ResultRow,
  type ResultStore,
  type StoredResultRow,
  type WorkerAggregate,
} from '../results.js';
import { toStored, toWorkerAggregate, type ResultTableRow } from '../rows.js';

/** Columns of a result table, in insert order (the same names in every implementation). */
const COLUMNS = [
  'id',
  'task_id',
  'key',
  'ok',
  'value',
  'error_code',
  'error_message',
  'host',
  'pid',
  'worker_id',
  'gpu',
  'price_per_hour',
  'attempt',
  'duration_ms',
  'started_at',
  'finished_at',
  'stored_at',
] as const;

/**
 * A rowid table with a unique index on `id`, not a table clustered on `id`: row ids are
 * usually hashes (a job item's key), so rows clustered on them would land on random pages and
 * each batch would rewrite most of the table's pages; in rowid order a batch appends to a few
 * pages and only the small index entries are scattered. Tables made WITHOUT ROWID by earlier
 * versions keep working with the same statements.
 */
function tableDdl(table: string): string {
  return `
CREATE TABLE IF NOT EXISTS "${table}" (
  id             TEXT NOT NULL PRIMARY KEY,
  task_id        TEXT NOT NULL,
  key            TEXT,
  ok             INTEGER NOT NULL,
  value          TEXT,
  error_code     TEXT,
  error_message  TEXT,
  host           TEXT NOT NULL,
  pid            INTEGER NOT NULL,
  worker_id      TEXT NOT NULL,
  gpu            TEXT,
  price_per_hour REAL,
  attempt        INTEGER NOT NULL,
  duration_ms    INTEGER NOT NULL,
  started_at     INTEGER NOT NULL,
  finished_at    INTEGER NOT NULL,
  stored_at      INTEGER NOT NULL,
  writes         INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS "${table}_finished_at" ON "${table}"(finished_at);`;
}

/** A result-table row as SQLite returns it: `ok` as 0/1, `value` as JSON text. */
type Row = Omit<ResultTableRow, 'ok' | 'value'> & { ok: number; value: string | null };

function toStoredRow(r: Row): StoredResultRow {
  return toStored({ ...r, ok: r.ok === 1, value: r.value === null ? null : JSON.parse(r.value) });
}

/** Appends the statement parameters of row `r`, in COLUMNS order, to `out`. */
function pushParams(out: unknown[], r: ResultRow, now: number): void {
  out.push(
    r.id,
    r.taskId,
    r.key ?? null,
    r.ok ? 1 : 0,
    r.value === undefined ? null : JSON.stringify(r.value),
    r.errorCode ?? null,
    r.errorMessage ?? null,
    r.host,
    r.pid,
    r.workerId,
    r.gpu ?? null,
    r.pricePerHour ?? null,
    r.attempt,
    r.durationMs,
    r.startedAt,
    r.finishedAt,
    now,
  );
}

type Statements = ReturnType<typeof prepare>;

/** Rows per multi-row upsert statement (17 parameters each, well under SQLite's limit). */
const ROWS_PER_STATEMENT = 64;

function upsertSql(t: string, rows: number): string {
  const updates = COLUMNS.filter((c) => c !== 'id')
    .map((c) => `${c} = excluded.${c}`)
    .join(', ');
  const one = `(${COLUMNS.map(() => '?').join(', ')})`;
  return `INSERT INTO ${t} (${COLUMNS.join(', ')}) VALUES ${Array(rows).fill(one).join(', ')}
    ON CONFLICT (id) DO UPDATE SET ${updates}, writes = ${t}.writes + 1
      WHERE excluded.ok = 1 OR ${t}.ok = 0
    RETURNING writes`;
}

function prepare(db: Database.Database, table: string) {
  const t = `"${table}"`;
  return {
    upsert: db.prepare<unknown[], number>(upsertSql(t, 1)).pluck(),
    upsertMany: db.prepare<unknown[], number>(upsertSql(t, ROWS_PER_STATEMENT)).pluck(),
    get: db.prepare<[string], Row>(`SELECT * FROM ${t} WHERE id = ?`),
    list: db.prepare<[string, number], Row>(`SELECT * FROM ${t} WHERE id > ? ORDER BY id LIMIT ?`),
    listOk: db.prepare<[string, number, number], Row>(
      `SELECT * FROM ${t} WHERE id > ? AND ok = ? ORDER BY id LIMIT ?`,
    ),
    counts: db.prepare<[], { total: number; ok: number | null }>(
      `SELECT COUNT(*) AS total, SUM(ok) AS ok FROM ${t}`,
    ),
    finishedSince: db
      .prepare<[number], number>(`SELECT COUNT(*) FROM ${t} WHERE finished_at >= ?`)
      .pluck(),
    workers: db.prepare<
      [],
      {
        worker_id: string;
        host: string;
        pid: number;
        gpu: string | null;
        price_per_hour: number | null;
        ok: number;
        failed: number;
        first_started_at: number;
        last_finished_at: number;
        busy_ms: number;
      }
    >(
      `SELECT worker_id, MAX(host) AS host, MAX(pid) AS pid, MAX(gpu) AS gpu,
              MAX(price_per_hour) AS price_per_hour, SUM(ok) AS ok, SUM(1 - ok) AS failed,
              MIN(started_at) AS first_started_at, MAX(finished_at) AS last_finished_at,
              SUM(duration_ms) AS busy_ms
       FROM ${t} GROUP BY worker_id ORDER BY host, worker_id`,
    ),
  };
}

/** The result-table part of {@link SqliteStore}: each call is one transaction. */
export class SqliteResults implements ResultStore {
  /** better-sqlite3 runs every statement on the calling thread. */
  readonly writesBlock = true;
  readonly #db: Database.Database;
  readonly #tables = new Map<string, Statements>();

  constructor(db: Database.Database) {
    this.#db = db;
  }

  /** Prepared statements of `table`, created first when `create`; undefined when it does not exist. */
  #table(table: string, create: true): Statements;
  #table(table: string, create?: false): Statements | undefined;
  #table(table: string, create = false): Statements | undefined {
    checkTableName(table);
    let stmts = this.#tables.get(table);
    if (stmts) return stmts;
    if (create) this.#db.exec(tableDdl(table));
    else if (!this.#exists(table)) return undefined;
    stmts = prepare(this.#db, table);
    this.#tables.set(table, stmts);
    return stmts;
  }

  #exists(table: string): boolean {
    return (
      this.#db
        .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?")
        .get(table) !== undefined
    );
  }

  async ensureResultTable(table: string): Promise<void> {
    this.#table(table, true);
  }

  async hasResultTable(table: string): Promise<boolean> {
    checkTableName(table);
    return this.#exists(table);
  }

  async upsertResults(
    table: string,
    rows: readonly ResultRow[],
    now = Date.now(),
  ): Promise<{ inserted: number; updated: number }> {
    return this.upsertResultChunks(table, [rows], now);
  }

  /**
   * The chunks are taken one at a time, so a caller that decodes them lazily (a generator) never
   * holds more than one chunk's rows: they die young, which spares the garbage collector
   * copying a whole batch.
   */
  async upsertResultChunks(
    table: string,
    chunks: Iterable<readonly ResultRow[]>,
    now = Date.now(),
  ): Promise<{ inserted: number; updated: number }> {
    const s = this.#table(table, true);
    return this.#db
      .transaction(() => {
        let inserted = 0;
        let written = 0;
        // Fewer statements, fewer crossings into SQLite: ROWS_PER_STATEMENT rows at a time. The
        // parameters go in as one array (better-sqlite3 binds its elements), not spread.
        const values: unknown[] = [];
        for (const rows of chunks) {
          const unique = lastOfEachIdSorted(rows);
          written += unique.length;
          let i = 0;
          for (; i + ROWS_PER_STATEMENT <= unique.length; i += ROWS_PER_STATEMENT) {
            values.length = 0;
            for (let j = i; j < i + ROWS_PER_STATEMENT; j++) pushParams(values, unique[j]!, now);
            for (const writes of s.upsertMany.all(values)) if (writes === 1) inserted++;
          }
          for (; i < unique.length; i++) {
            values.length = 0;
            pushParams(values, unique[i]!, now);
            if (s.upsert.get(values) === 1) inserted++;
          }
        }
        return { inserted, updated: written - inserted };
      })
      .immediate();
  }

  async getResults(table: string, ids: readonly string[]): Promise<StoredResultRow[]> {
    const s = this.#table(table);
    if (!s) return [];
    const out: StoredResultRow[] = [];
    for (const id of ids) {
      const row = s.get.get(id);
      if (row) out.push(toStoredRow(row));
    }
    return out;
  }

  async listResults(table: string, options: ListResultsOptions = {}): Promise<StoredResultRow[]> {
    const s = this.#table(table);
    if (!s) return [];
    const after = options.afterId ?? '';
    const limit = options.limit ?? 1000;
    const rows =
      options.ok === undefined
        ? s.list.all(after, limit)
        : s.listOk.all(after, options.ok ? 1 : 0, limit);
    return rows.map(toStoredRow);
  }

  async resultCounts(table: string): Promise<ResultCounts> {
    const c = this.#table(table)?.counts.get() ?? { total: 0, ok: 0 };
    const ok = c.ok ?? 0;
    return { total: c.total, ok, failed: c.total - ok };
  }

  async countFinishedSince(table: string, since: number): Promise<number> {
    return this.#table(table)?.finishedSince.get(since) ?? 0;
  }

  async workerStats(table: string): Promise<WorkerAggregate[]> {
    const rows = this.#table(table)?.workers.all() ?? [];
    return rows.map(toWorkerAggregate);
  }
}
