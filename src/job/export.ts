import type { Store } from '../store/contract.js';
import type { JobItem } from '../store/jobs.js';
import type { StoredResultRow } from '../store/results.js';
import { getJobOrThrow } from './status.js';

/** An item's state in an export: it has a successful row, a failed row, or none yet. */
export type ExportStatus = 'done' | 'failed' | 'pending';

/** One line of `qtune job export`: the input item next to its result row. */
export interface ExportedItem {
  id: string;
  status: ExportStatus;
  item: Record<string, unknown>;
  value?: unknown;
  error?: { code: string; message: string };
  host?: string;
  gpu?: string;
  attempt?: number;
  durationMs?: number;
  finishedAt?: number;
}

function exported(it: JobItem, row: StoredResultRow | undefined): ExportedItem {
  const e: ExportedItem = {
    id: it.id,
    status: row === undefined ? 'pending' : row.ok ? 'done' : 'failed',
    item: it.item,
  };
  if (!row) return e;
  if (row.value !== undefined) e.value = row.value;
  if (!row.ok) e.error = { code: row.errorCode ?? '', message: row.errorMessage ?? '' };
  e.host = row.host;
  if (row.gpu !== undefined) e.gpu = row.gpu;
  e.attempt = row.attempt;
  e.durationMs = row.durationMs;
  e.finishedAt = row.finishedAt;
  return e;
}

/**
 * Yields every item of a job in submission order with its result row, a page at a time
 * (`pageSize` items, default 1000), so a large job never sits in memory whole.
 */
export async function* exportJob(
  store: Store,
  name: string,
  options: { pageSize?: number; status?: ExportStatus } = {},
): AsyncGenerator<ExportedItem> {
  const job = await getJobOrThrow(store, name);
  const pageSize = options.pageSize ?? 1000;
  let afterSeq = 0;
  for (;;) {
    const items = await store.jobs.listJobItems(name, { afterSeq, limit: pageSize });
    if (items.length === 0) return;
    afterSeq = items.at(-1)!.seq;
    const rows = new Map(
      (
        await store.results.getResults(
          job.table,
          items.map((i) => i.id),
        )
      ).map((r) => [r.id, r]),
    );
    for (const it of items) {
      const e = exported(it, rows.get(it.id));
      if (options.status === undefined || e.status === options.status) yield e;
    }
  }
}

/** Names of the item fields across a job (first-seen order), for CSV columns. */
export async function jobItemFields(store: Store, name: string): Promise<string[]> {
  const fields = new Set<string>();
  let afterSeq = 0;
  for (;;) {
    const items = await store.jobs.listJobItems(name, { afterSeq, limit: 5000 });
    if (items.length === 0) return [...fields];
    afterSeq = items.at(-1)!.seq;
    for (const it of items) for (const k of Object.keys(it.item)) fields.add(k);
  }
}
