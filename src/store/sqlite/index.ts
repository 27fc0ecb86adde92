import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { ErrorCode, QtuneError } from '../../protocol/errors.js';
import { CompositeStore } from '../composite.js';
import { DEFAULT_STORE_PATH } from '../contract.js';
import { EXPERIMENT_DDL, SqliteExperiments } from './experiments.js';
import { JOB_DDL, JOB_ITEMS_TO_ROWID, SqliteJobs } from './jobs.js';
import { SqliteResults } from './results.js';

/** 1: the first layout; 2: job items in a rowid table. */
const SCHEMA_VERSION = 2;

/** WAL size (4 KiB pages) past which a commit checkpoints: about 40 MiB. */
const WAL_AUTOCHECKPOINT_PAGES = 10_000;
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
    throw new QtuneError(
      ErrorCode.BrokerState,
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
  try {
    mkdirSync(dirname(path), { recursive: true });
    const db = new Database(path);
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    // A sink's batch scatters index entries over many pages (row ids are hashes): each commit
    // writes every page it touched to the WAL. Checkpointing every WAL_AUTOCHECKPOINT_PAGES
    // rather than SQLite's 1,000 copies such a page into the file once for many commits.
    db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
    db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT_BYTES}`);
    migrate(db);
    return db;
  } catch (err) {
    if (err instanceof QtuneError) throw err;
    throw new QtuneError(
      ErrorCode.BrokerUnavailable,
      `store "${path}": ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

/**
 * The store in one SQLite file (WAL), shared safely by several processes: the scheduler, the
 * sink, and the `experiment`/`job` commands. Each call is one transaction, committed before
 * its promise resolves.
 */
export class SqliteStore extends CompositeStore {
  readonly kind = 'sqlite';
  readonly location: string;
  readonly #db: Database.Database;

  constructor(options: SqliteStoreOptions = {}) {
    const path = resolve(options.path ?? DEFAULT_STORE_PATH);
    const db = openDatabase(path, options.busyTimeoutMs ?? 10_000);
    super({
      experiments: new SqliteExperiments(db),
      jobs: new SqliteJobs(db),
      results: new SqliteResults(db),
    });
    this.#db = db;
    this.location = path;
  }

  async close(): Promise<void> {
    if (this.#db.open) this.#db.close();
  }
}
