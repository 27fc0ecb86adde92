import { checkTableName, lastOfEachIdSorted } from '../results.js';
import type {
  ListResultsOptions,
  ResultCounts,
  ResultRow,
  ResultStore,
  StoredResultRow,
  WorkerAggregate,
} from '../results.js';
import { ADVISORY_LOCK_SQL, UNDEFINED_TABLE, sqlState } from './db.js';
import type { PgDb } from './db.js';
import { toStored, toWorkerAggregate, type ResultTableRow, type WorkerRow } from '../rows.js';
import { resultTableDdl } from './schema.js';

/** Columns written by an upsert with the array type each is sent as, in insert order. */
const COLUMNS = [
  ['id', 'text[]'],
  ['task_id', 'text[]'],
  ['key', 'text[]'],
  ['ok', 'boolean[]'],
  ['value', 'jsonb[]'],
  ['error_code', 'text[]'],
  ['error_message', 'text[]'],
  ['host', 'text[]'],
  ['pid', 'integer[]'],
  ['worker_id', 'text[]'],
  ['gpu', 'text[]'],
  ['price_per_hour', 'double precision[]'],
  ['attempt', 'integer[]'],
  ['duration_ms', 'bigint[]'],
  ['started_at', 'bigint[]'],
  ['finished_at', 'bigint[]'],
] as const;

/**
 * The upsert of a batch: one statement whatever the batch size, each column sent as one
 * array parameter; the last parameter is `stored_at`. A failed row does not replace a
 * successful one (the `WHERE` of `DO UPDATE`). Counts new rows by `xmax = 0` (a row version no
 * transaction has updated or locked yet is a fresh insert); a kept row returns nothing.
 */
function upsertSql(table: string): string {
  const names = COLUMNS.map(([c]) => c);
  const arrays = COLUMNS.map(([, type], i) => `$${i + 1}::${type}`).join(', ');
  const stored = `$${COLUMNS.length + 1}::bigint`;
  const updates = [...names.slice(1), 'stored_at'].map((c) => `${c} = excluded.${c}`).join(', ');
  return `WITH up AS (
  INSERT INTO "${table}" AS t (${names.join(', ')}, stored_at)
  SELECT u.*, ${stored} FROM unnest(${arrays}) AS u
  ON CONFLICT (id) DO UPDATE SET ${updates}, writes = t.writes + 1
    WHERE excluded.ok OR NOT t.ok
  RETURNING (xmax = 0) AS inserted
)
SELECT COUNT(*) AS inserted FROM up WHERE inserted`;
}

/** Column arrays of a batch, in {@link COLUMNS} order. */
function columnArrays(rows: readonly ResultRow[]): unknown[][] {
  const cols: unknown[][] = COLUMNS.map(() => new Array<unknown>(rows.length));
  rows.forEach((r, i) => {
    cols[0]![i] = r.id;
    cols[1]![i] = r.taskId;
    cols[2]![i] = r.key ?? null;
    cols[3]![i] = r.ok;
    cols[4]![i] = r.value === undefined ? null : JSON.stringify(r.value);
    cols[5]![i] = r.errorCode ?? null;
    cols[6]![i] = r.errorMessage ?? null;
    cols[7]![i] = r.host;
    cols[8]![i] = r.pid;
    cols[9]![i] = r.workerId;
    cols[10]![i] = r.gpu ?? null;
    cols[11]![i] = r.pricePerHour ?? null;
    cols[12]![i] = r.attempt;
    // bigint columns take whole milliseconds; a fractional duration or time is rounded.
    cols[13]![i] = Math.round(r.durationMs);
    cols[14]![i] = Math.round(r.startedAt);
    cols[15]![i] = Math.round(r.finishedAt);
  });
  return cols;
}

/**
 * The result-table part of {@link PostgresStore}. Reading a table that does not exist gives
 * what an empty one would; writing to one creates it.
 */
export class PgResults implements ResultStore {
  /** Statements go to the server; the calling thread only waits. */
  readonly writesBlock = false;
  readonly #db: PgDb;
  /** Tables this handle created or found, so upserts skip the DDL. */
  readonly #known = new Set<string>();

  constructor(db: PgDb) {
    this.#db = db;
  }

  async ensureResultTable(table: string): Promise<void> {
    checkTableName(table);
    await this.#db.transaction(async (client) => {
      // Concurrent CREATE TABLE IF NOT EXISTS of one name can collide in the catalog.
      await client.query(ADVISORY_LOCK_SQL, [`result table ${table}`]);
      await client.query(resultTableDdl(table));
    });
    this.#known.add(table);
  }

  async hasResultTable(table: string): Promise<boolean> {
    checkTableName(table);
    const r = await this.#db.query<{ found: boolean }>(
      `SELECT EXISTS (
         SELECT 1 FROM pg_catalog.pg_class
         WHERE oid = to_regclass($1) AND relkind IN ('r', 'p')
       ) AS found`,
      [`"${table}"`],
    );
    return r.rows[0]!.found;
  }

  async upsertResults(
    table: string,
    rows: readonly ResultRow[],
    now = Date.now(),
  ): Promise<{ inserted: number; updated: number }> {
    return this.upsertResultChunks(table, [rows], now);
  }

  /**
   * One statement per chunk: a single chunk (the sink's batch) on its own, several in one
   * transaction. The chunks are all taken first, so that the transaction can be run again after
   * its table was dropped (PostgreSQL's writes leave the thread, so holding them costs little).
   */
  async upsertResultChunks(
    table: string,
    chunks: Iterable<readonly ResultRow[]>,
    now = Date.now(),
  ): Promise<{ inserted: number; updated: number }> {
    checkTableName(table);
    const batches: ResultRow[][] = [];
    for (const rows of chunks) if (rows.length > 0) batches.push(lastOfEachIdSorted(rows));
    if (!this.#known.has(table)) await this.ensureResultTable(table);
    if (batches.length === 0) return { inserted: 0, updated: 0 };
    const sql = upsertSql(table);
    const params = batches.map((unique) => [...columnArrays(unique), Math.round(now)]);
    const write = async (): Promise<number> => {
      if (params.length === 1) {
        return (await this.#db.query<{ inserted: number }>(sql, params[0])).rows[0]!.inserted;
      }
      return this.#db.transaction(async (client) => {
        let inserted = 0;
        for (const values of params) {
          inserted += (await client.query<{ inserted: number }>(sql, values)).rows[0]!.inserted;
        }
        return inserted;
      });
    };
    let inserted;
    try {
      inserted = await write();
    } catch (err) {
      if (sqlState((err as Error).cause) !== UNDEFINED_TABLE) throw err;
      // Dropped since this handle created it: create it again.
      await this.ensureResultTable(table);
      inserted = await write();
    }
    const written = batches.reduce((n, unique) => n + unique.length, 0);
    return { inserted, updated: written - inserted };
  }

  /** Runs a read of result table `table`; `empty` when the table does not exist. */
  async #read<T>(table: string, read: (t: string) => Promise<T>, empty: T): Promise<T> {
    checkTableName(table);
    try {
      return await read(`"${table}"`);
    } catch (err) {
      if (sqlState((err as Error).cause) === UNDEFINED_TABLE) return empty;
      throw err;
    }
  }

  async getResults(table: string, ids: readonly string[]): Promise<StoredResultRow[]> {
    if (ids.length === 0) {
      checkTableName(table);
      return [];
    }
    return this.#read(
      table,
      async (t) => {
        const r = await this.#db.query<ResultTableRow>(
          `SELECT * FROM ${t} WHERE id = ANY($1::text[])`,
          [ids],
        );
        return r.rows.map(toStored);
      },
      [],
    );
  }

  async listResults(table: string, options: ListResultsOptions = {}): Promise<StoredResultRow[]> {
    return this.#read(
      table,
      async (t) => {
        const r = await this.#db.query<ResultTableRow>(
          `SELECT * FROM ${t}
           WHERE id > $1 AND ($2::boolean IS NULL OR ok = $2::boolean)
           ORDER BY id LIMIT $3`,
          [options.afterId ?? '', options.ok ?? null, options.limit ?? 1000],
        );
        return r.rows.map(toStored);
      },
      [],
    );
  }

  async resultCounts(table: string): Promise<ResultCounts> {
    return this.#read(
      table,
      async (t) => {
        const r = await this.#db.query<{ total: number; ok: number }>(
          `SELECT COUNT(*) AS total, COUNT(*) FILTER (WHERE ok) AS ok FROM ${t}`,
        );
        const { total, ok } = r.rows[0]!;
        return { total, ok, failed: total - ok };
      },
      { total: 0, ok: 0, failed: 0 },
    );
  }

  async countFinishedSince(table: string, since: number): Promise<number> {
    return this.#read(
      table,
      async (t) => {
        const r = await this.#db.query<{ n: number }>(
          `SELECT COUNT(*) AS n FROM ${t} WHERE finished_at >= $1`,
          [since],
        );
        return r.rows[0]!.n;
      },
      0,
    );
  }

  async workerStats(table: string): Promise<WorkerAggregate[]> {
    return this.#read(
      table,
      async (t) => {
        const r = await this.#db.query<WorkerRow>(
          `SELECT worker_id, MAX(host) AS host, MAX(pid) AS pid, MAX(gpu) AS gpu,
                  MAX(price_per_hour) AS price_per_hour,
                  COUNT(*) FILTER (WHERE ok) AS ok, COUNT(*) FILTER (WHERE NOT ok) AS failed,
                  MIN(started_at) AS first_started_at, MAX(finished_at) AS last_finished_at,
                  SUM(duration_ms)::bigint AS busy_ms
           FROM ${t} GROUP BY worker_id
           ORDER BY MAX(host) COLLATE "C", worker_id COLLATE "C"`,
        );
        return r.rows.map(toWorkerAggregate);
      },
      [],
    );
  }
}
