/** Choosing a Store implementation by URL: `parseStoreUrl` and `openStore`. */

import { splitTargetUrl, targetPath, unknownScheme } from '../protocol/target-url.js';
import type { Store } from './contract.js';

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
  const target = splitTargetUrl(url);
  switch (target.scheme) {
    case undefined:
    case 'sqlite':
    case 'file':
      return { kind: 'sqlite', location: targetPath(target, cwd, 'store.db') };
    case 'postgres':
    case 'postgresql':
      return { kind: 'postgres', location: target.raw };
    default:
      throw unknownScheme('store URL', target, 'sqlite:PATH, a file path, or postgres://HOST/DB');
  }
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
