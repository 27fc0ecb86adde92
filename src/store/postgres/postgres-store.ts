import { redact } from '../../protocol/redact.js';
import { parseNetworkUrl } from '../../protocol/target-url.js';
import type { Store } from '../contract.js';
import { PgDb } from './db.js';
import type { PgDbOptions } from './db.js';
import { PgExperiments } from './experiments.js';
import { PgJobs } from './jobs.js';
import { PgResults } from './results.js';
import { migrate } from './schema.js';

export type PostgresStoreOptions = PgDbOptions;

/**
 * The store in a PostgreSQL database, shared by any number of processes on any machines.
 * Tables are created on open when missing; each call is one transaction, committed before its
 * promise resolves.
 */
export class PostgresStore implements Store {
  readonly kind = 'postgres';
  readonly location: string;
  readonly experiments: PgExperiments;
  readonly jobs: PgJobs;
  readonly results: PgResults;
  readonly #db: PgDb;

  private constructor(db: PgDb) {
    this.#db = db;
    this.location = db.location;
    this.experiments = new PgExperiments(db);
    this.jobs = new PgJobs(db);
    this.results = new PgResults(db);
  }

  /**
   * Connects to the database at `url` (`postgres://user:password@host:port/db`) and creates
   * qtune's tables when missing. Throws StoreUnavailable naming the URL (password hidden)
   * when the database cannot be reached.
   */
  static async open(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const location = redact(url);
    parseNetworkUrl(url, {
      what: 'store URL',
      schemes: ['postgres', 'postgresql'],
      expected: 'postgres://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE',
    });
    const db = new PgDb(url, location, options);
    try {
      await migrate(db);
    } catch (err) {
      await db.close().catch(() => {});
      throw err;
    }
    return new PostgresStore(db);
  }

  /** Ends the pool's connections; later calls throw StoreState. */
  async close(): Promise<void> {
    await this.#db.close();
  }
}
