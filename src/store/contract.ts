/**
 * The Store contract: everything qtune keeps outside the broker — experiments and their
 * trials, batch jobs and their items, and result tables. Implementations sit side by side
 * (`sqlite/`, `postgres/`) and pass one conformance suite (`test/store/conformance/suite.ts`).
 */

import { join, resolve } from 'node:path';
import { redact as redactUrl } from '../broker/open.js';
import { InputError } from '../protocol/errors.js';
import { projectHome } from '../protocol/project-home.js';
import type { ExperimentStore } from './experiments.js';
import type { JobStore } from './jobs.js';
import type { ResultStore } from './results.js';

export interface Store extends ExperimentStore, JobStore, ResultStore {
  /** Implementation name: `sqlite` or `postgres`. */
  readonly kind: string;
  /** Where it is, with any password hidden: a file path or a `postgres://` URL. */
  readonly location: string;
}

/** Default location of the SQLite store, relative to the working directory. */
export const DEFAULT_STORE_PATH = '.qtune/store.db';

export interface StoreTarget {
  kind: 'sqlite' | 'postgres';
  /** SQLite: the absolute file path. PostgreSQL: the connection URL. */
  location: string;
}

/**
 * Parses a store URL. Accepted: unset or empty (SQLite at `store.db` in the project's `.qtune/`
 * folder, found from `cwd` upward or given by `QTUNE_HOME`), `sqlite:PATH`
 * or a plain file path (SQLite), `postgres://...` or `postgresql://...` (PostgreSQL).
 */
export function parseStoreUrl(url: string | undefined, cwd = process.cwd()): StoreTarget {
  const raw = (url ?? '').trim();
  if (raw === '') return { kind: 'sqlite', location: join(projectHome(cwd), 'store.db') };
  const scheme = /^([a-z][a-z0-9+.-]*):(.*)$/i.exec(raw);
  if (!scheme || scheme[1]!.length === 1 /* a Windows drive letter */) {
    return { kind: 'sqlite', location: resolve(cwd, raw) };
  }
  const name = scheme[1]!.toLowerCase();
  if (name === 'postgres' || name === 'postgresql') return { kind: 'postgres', location: raw };
  if (name === 'sqlite' || name === 'file') {
    const rest = scheme[2]!.replace(/^\/\//, '');
    return {
      kind: 'sqlite',
      location: rest === '' ? join(projectHome(cwd), 'store.db') : resolve(cwd, rest),
    };
  }
  throw new InputError(
    `store URL "${redactUrl(raw)}": unknown scheme "${name}:" (expected sqlite:PATH, a file path, or postgres://HOST/DB)`,
  );
}

/** Opens the store chosen by URL (see {@link parseStoreUrl}); PostgreSQL tables are created on first use. */
export async function openStore(url?: string): Promise<Store> {
  const target = parseStoreUrl(url);
  if (target.kind === 'postgres') {
    const { PostgresStore } = await import('./postgres/index.js');
    return PostgresStore.open(target.location);
  }
  const { SqliteStore } = await import('./sqlite/index.js');
  return new SqliteStore({ path: target.location });
}
