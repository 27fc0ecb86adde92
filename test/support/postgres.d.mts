/** Types of postgres.mjs. */
export function postgresAvailable(): boolean;

export interface PostgresOptions {
  /**
   * Keep fsync, synchronous_commit and full_page_writes on, as a production server would
   * (default: false, all three off for speed).
   */
  durable?: boolean;
  /** Extra server settings, passed as `-c key=value` (default: none). */
  settings?: Record<string, string>;
  /** Parent directory of the cluster's temp dir (default: the system temp dir). */
  dir?: string;
  /** How long to wait for the server to accept connections, in ms (default: 60000). */
  timeoutMs?: number;
}

export interface CreateDatabaseOptions {
  /** Collate with this ICU locale, e.g. `en-US` (default: the cluster's `C` locale). */
  icuLocale?: string;
}

export interface PostgresServer {
  /** URL of the `postgres` database as role `qtune` (trust authentication, no password). */
  readonly url: string;
  readonly port: number;
  /** The cluster's data directory, also holding its Unix socket. */
  readonly dir: string;
  /** Creates database `name` owned by `qtune`; resolves to its URL. */
  createDatabase(name: string, options?: CreateDatabaseOptions): Promise<string>;
  /** Stops the server (fast shutdown) and removes its directory. */
  stop(): Promise<void>;
}

/** Starts a throwaway PostgreSQL server on loopback and waits until it accepts connections. */
export function startPostgres(options?: PostgresOptions): Promise<PostgresServer>;
