import pg from 'pg';
import type { PoolClient, QueryResult, QueryResultRow } from 'pg';
import { ErrorCode, InputError, QtuneError, StoreError } from '../../protocol/errors.js';

/** OID of `bigint` (int8): epoch milliseconds, counts and sequence numbers. */
const INT8_OID = 20;

/**
 * Type parsers of the store's connections: `bigint` comes back as a number (epoch ms, counts
 * and sequence numbers stay far below 2^53); every other type as node-postgres parses it.
 */
function storeTypes(): pg.TypeOverrides {
  const types = new pg.TypeOverrides();
  types.setTypeParser(INT8_OID, (v: string) => Number(v));
  return types;
}

/** First key of the two-key advisory locks qtune takes (`qtun` in ASCII). */
const LOCK_CLASS = 0x7174756e;

/** SQL that takes the transaction-scoped advisory lock named by `$1` (a text). */
export const ADVISORY_LOCK_SQL = `SELECT pg_advisory_xact_lock(${LOCK_CLASS}, hashtext($1))`;

/** SQLSTATE of a missing table. */
export const UNDEFINED_TABLE = '42P01';
/** SQLSTATEs worth one more try: serialization failure, deadlock. */
const RETRYABLE = new Set(['40001', '40P01']);

/** The SQLSTATE of a server error, if it is one. */
export function sqlState(err: unknown): string | undefined {
  return err instanceof pg.DatabaseError ? err.code : undefined;
}

/** True for errors a transaction can be retried after. */
export function isRetryable(err: unknown): boolean {
  return RETRYABLE.has(sqlState(err) ?? '');
}

function messageOf(err: unknown): string {
  if (err instanceof AggregateError && err.message === '') {
    // A refused connection to a name with several addresses (localhost: ::1 and 127.0.0.1).
    return err.errors.map((e: unknown) => messageOf(e)).join('; ');
  }
  if (err instanceof Error) {
    return err.message !== '' ? err.message : ((err as { code?: string }).code ?? err.name);
  }
  return String(err);
}

/**
 * Translates anything a query threw: bad data (SQLSTATE class 22, e.g. a number out of range)
 * is an InputError,
 * everything else (connection refused or lost, authentication, server shutting down) is
 * StoreUnavailable. Both name the store by its redacted URL.
 */
export function storeError(location: string, err: unknown): Error {
  if (err instanceof QtuneError) return err;
  const message = `store "${location}": ${messageOf(err)}`;
  const state = sqlState(err);
  if (state?.startsWith('22')) {
    return new InputError(message, { cause: err });
  }
  return new StoreError(ErrorCode.StoreUnavailable, message, { cause: err });
}

export interface PgDbOptions {
  /** Most connections the pool opens (default: 10). */
  max?: number;
  /** How long to wait for a new connection, in ms (default: 10000). */
  connectTimeoutMs?: number;
}

const noop = (): void => {};

/**
 * A connection pool with the store's type parsers and error translation: `query` runs one
 * statement (its own transaction), `transaction` runs several in one.
 */
export class PgDb {
  readonly location: string;
  readonly #pool: pg.Pool;
  #closed = false;

  constructor(url: string, location: string, options: PgDbOptions = {}) {
    this.location = location;
    this.#pool = new pg.Pool({
      connectionString: url,
      types: storeTypes(),
      max: options.max ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 10_000,
      application_name: 'qtune',
    });
    // An idle connection that breaks (server restart) must not crash the process; the next
    // query gets a fresh connection or reports the failure.
    this.#pool.on('error', noop);
  }

  #checkOpen(): void {
    if (this.#closed) {
      throw new StoreError(ErrorCode.StoreState, `store "${this.location}": closed`);
    }
  }

  /** Runs one statement. */
  async query<R extends QueryResultRow>(
    text: string,
    values?: readonly unknown[],
  ): Promise<QueryResult<R>> {
    this.#checkOpen();
    try {
      return await this.#pool.query<R>(text, values as unknown[] | undefined);
    } catch (err) {
      throw storeError(this.location, err);
    }
  }

  /**
   * Runs `fn` in one transaction (READ COMMITTED) on one connection: committed when it
   * resolves, rolled back when it throws. Retried once after a deadlock or serialization
   * failure.
   */
  async transaction<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#transactionOnce(fn);
      } catch (err) {
        if (attempt < 3 && isRetryable(err)) continue;
        throw storeError(this.location, err);
      }
    }
  }

  async #transactionOnce<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    this.#checkOpen();
    const client = await this.#pool.connect();
    // A checked-out connection that breaks between statements emits 'error'; the statement
    // in progress (or the next one) fails with it, so the event itself is not needed.
    client.on('error', noop);
    let broken: unknown;
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch((rollbackErr: unknown) => {
        broken = rollbackErr;
      });
      throw err;
    } finally {
      client.off('error', noop);
      client.release(broken instanceof Error ? broken : undefined);
    }
  }

  /** Ends every connection; later calls throw StoreState. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }
}
