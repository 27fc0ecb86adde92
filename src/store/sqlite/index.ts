import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { ErrorCode, QtuneError, StoreError } from '../../protocol/errors.js';
import { DEFAULT_STORE_PATH, type Store } from '../contract.js';
import { EXPERIMENT_DDL, SqliteExperiments } from './experiments.js';
import { JOB_DDL, JOB_ITEMS_TO_ROWID, SqliteJobs } from './jobs.js';
import { SqliteResults } from './results.js';

/** 1: the first layout; 2: job items in a rowid table. */
const SCHEMA_VERSION = 2;

/**
 * Page size of a new store file. A sink's batch scatters index entries over most of a result
 * table's index pages (row ids are hashes), and its commit writes each of those pages to the
 * WAL, one write call per page: with 16 KiB pages that is a quarter of the calls for the same
 * bytes. A file made with another page size keeps it.
 */
const NEW_FILE_PAGE_BYTES = 16 * 1024;
/** WAL size past which a commit checkpoints. */
const WAL_AUTOCHECKPOINT_BYTES = 40 * 1024 * 1024;
/** Size the WAL file is cut back to once checkpointed, at most. */
const JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024;

export interface SqliteStoreOptions {
  /** Database file; created with its folder when missing (default: `./.qtune/store.db`). */
  path?: string;
  /** Time to wait for another process's write lock, in ms (default: 10000). */
  busyTimeoutMs?: number;
}

function schemaVersion(db: Database.Database): number {
  const version = Number(db.pragma('user_version', { simple: true }));
  if (version > SCHEMA_VERSION) {
    throw new StoreError(
      ErrorCode.StoreState,
      `store "${db.name}": schema version ${version} is newer than this qtune supports (${SCHEMA_VERSION})`,
    );
  }
  return version;
}

function migrate(db: Database.Database): void {
  if (schemaVersion(db) === SCHEMA_VERSION) return;
  db.transaction(() => {
    // Read again under the write lock: another process may have migrated meanwhile.
    const version = schemaVersion(db);
    if (version === SCHEMA_VERSION) return;
    if (version === 0) db.exec(EXPERIMENT_DDL + JOB_DDL);
    if (version === 1) db.exec(JOB_ITEMS_TO_ROWID);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

function openDatabase(path: string, busyTimeoutMs: number): Database.Database {
  let db: Database.Database | undefined;
  try {
    mkdirSync(dirname(path), { recursive: true });
    db = new Database(path);
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    // Takes effect only while the file is still empty: before the WAL switch writes its header.
    db.pragma(`page_size = ${NEW_FILE_PAGE_BYTES}`);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    // A sink's batch scatters index entries over many pages (row ids are hashes): each commit
    // writes every page it touched to the WAL. Checkpointing every WAL_AUTOCHECKPOINT_BYTES
    // rather than SQLite's 1,000 pages copies such a page into the file once for many commits.
    const pageBytes = Number(db.pragma('page_size', { simple: true }));
    db.pragma(`wal_autocheckpoint = ${Math.ceil(WAL_AUTOCHECKPOINT_BYTES / pageBytes)}`);
    db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT_BYTES}`);
    // A statement inside a transaction keeps the pages it changes in a statement journal, so that
    // it can be undone alone. A sink's multi-row upsert touches scattered pages: past 64 KiB that
    // journal spills to a temporary file, one write per page. In memory it stays a copy (a few
    // hundred KiB per statement).
    db.pragma('temp_store = MEMORY');
    migrate(db);
    return db;
  } catch (err) {
    // A store that cannot be used is not left open (a newer schema, a failed migration).
    if (db?.open) db.close();
    if (err instanceof QtuneError) throw err;
    throw new StoreError(ErrorCode.StoreUnavailable, `store "${path}": ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/**
 * The store in one SQLite file (WAL), shared safely by several processes: the scheduler, the
 * sink, and the `experiment`/`job` commands. Each call is one transaction, committed before
 * its promise resolves.
 */
export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  readonly location: string;
  readonly experiments: SqliteExperiments;
  readonly jobs: SqliteJobs;
  readonly results: SqliteResults;
  readonly #db: Database.Database;

  constructor(options: SqliteStoreOptions = {}) {
    const path = resolve(options.path ?? DEFAULT_STORE_PATH);
    const db = openDatabase(path, options.busyTimeoutMs ?? 10_000);
    this.#db = db;
    this.location = path;
    this.experiments = new SqliteExperiments(db);
    this.jobs = new SqliteJobs(db);
    this.results = new SqliteResults(db);
  }

  async close(): Promise<void> {
    if (this.#db.open) this.#db.close();
  }
}
