import { declareQueueOrKeep, type Broker } from '../broker/contract.js';
import { resultQueueOf, submitTasks } from '../patterns/work-queue.js';
import { InputError, toError } from '../protocol/errors.js';
import { keyOf } from '../protocol/key.js';
import type { Store } from '../store/contract.js';
import type { JobRecord, NewJobItem } from '../store/jobs.js';
import { checkTableName } from '../store/results.js';

/** Turns an item into its task payload (a template, or the item itself). */
export type RenderItem = (item: Record<string, unknown>) => unknown;

/** An item to submit, and where it came from for error messages (e.g. `"items.jsonl" line 7`). */
export interface SubmitItem {
  item: Record<string, unknown>;
  where: string;
}

/**
 * The items of a job, read anew on each call: submitJob goes through them twice (first to check
 * every one, then to store them a chunk at a time), so a file of any size is never held in
 * memory. Each call must give the same items in the same order.
 */
export type ItemSource = () => AsyncIterable<SubmitItem> | Iterable<SubmitItem>;

/** An ItemSource over items already in memory; `where` says `item N`. */
export function itemsFromArray(items: readonly Record<string, unknown>[]): ItemSource {
  return function* () {
    for (let i = 0; i < items.length; i++) yield { item: items[i]!, where: `item ${i + 1}` };
  };
}

export interface SubmitJobOptions {
  broker: Broker;
  store: Store;
  /** Job name; also the default queue and result table name. */
  name: string;
  /** The items (see ItemSource; an invalid file is rejected by its iterator). */
  items: ItemSource;
  /** Item fields whose values make the item's id (default: the whole item). */
  keyFields?: readonly string[];
  /** Payload of an item's task (default: the item). */
  render?: RenderItem;
  /** Task queue (default: the job name). */
  queue?: string;
  /** Result table (default: the job name). */
  table?: string;
  /**
   * Lease of the job's queue when this call creates it: how long a task held by a worker that
   * died stays invisible before it is redelivered (default: the broker's, 30 s).
   */
  leaseMs?: number;
  /** Tasks per publish (default: 1000). */
  batchSize?: number;
  /** Called after each published batch with the count so far. */
  onProgress?: (published: number, toPublish: number) => void;
}

export interface SubmitJobResult {
  job: JobRecord;
  /** Items in the input. */
  items: number;
  /** Items new to the job (the others were submitted before, or repeat a key in the input). */
  added: number;
  /** Tasks published by this call (new items, plus any a previous submit stored but did not publish). */
  published: number;
}

/** Job names are queue names and, by default, table names. */
export function checkJobName(name: string): string {
  try {
    return checkTableName(name);
  } catch (err) {
    throw new InputError(toError(err).message.replace(/^table name/, 'job name'));
  }
}

/** Items per store transaction while the items are stored. */
const STORE_CHUNK = 5000;

/**
 * Submits a batch job: stores the job and its items (each keyed by a hash of its key fields),
 * then publishes one task per item not yet published, with the item's id as the task's
 * idempotency key. Re-submitting the same items adds and publishes nothing; a submit that
 * crashed half-way is completed by the next one. The whole input is checked before anything
 * is stored (a first pass over the items): an unreadable item, one without a key field, or one
 * the template cannot fill is an InputError naming where it came from. The second pass stores
 * the items a chunk at a time, so memory does not grow with the input.
 */
export async function submitJob(options: SubmitJobOptions): Promise<SubmitJobResult> {
  const { broker, store } = options;
  const name = checkJobName(options.name);
  const queue = options.queue ?? name;
  const table = checkTableName(options.table ?? name);
  const keyFields = options.keyFields ?? [];
  const batchSize = Math.max(1, options.batchSize ?? 1000);
  const prepare = ({ item, where }: SubmitItem): NewJobItem => {
    try {
      return {
        id: keyOf(item, keyFields),
        item,
        payload: options.render ? options.render(item) : item,
      };
    } catch (err) {
      throw new InputError(`${where}: ${toError(err).message}`, { cause: err });
    }
  };

  let items = 0;
  for await (const it of options.items()) {
    prepare(it);
    items++;
  }

  const job = await store.jobs.upsertJob({ name, queue, table, keyFields });
  let added = 0;
  let chunk: NewJobItem[] = [];
  let stored = 0;
  for await (const it of options.items()) {
    chunk.push(prepare(it));
    stored++;
    if (chunk.length === STORE_CHUNK) {
      added += await store.jobs.addJobItems(name, chunk);
      chunk = [];
    }
  }
  if (chunk.length > 0) added += await store.jobs.addJobItems(name, chunk);
  if (stored !== items) {
    // What was stored is kept (the next submit of the same items completes it), but nothing
    // is published from an input that changed under us.
    throw new InputError(
      `the input changed while it was submitted: ${items} item(s) checked, ${stored} stored; submit it again`,
    );
  }

  await declareQueueOrKeep(
    broker,
    queue,
    options.leaseMs === undefined ? {} : { leaseMs: options.leaseMs },
  );
  await broker.declareQueue(resultQueueOf(queue));
  const toPublish = (await store.jobs.jobItemCounts(name)).new;
  let published = 0;
  for (;;) {
    const batch = await store.jobs.unpublishedItems(name, batchSize);
    if (batch.length === 0) break;
    const ids = await submitTasks(
      broker,
      queue,
      batch.map((it) => ({ payload: it.payload, key: it.id })),
      { declare: false, batchSize },
    );
    await store.jobs.markItemsQueued(
      name,
      batch.map((it, i) => ({ id: it.id, taskId: ids[i]! })),
    );
    published += batch.length;
    options.onProgress?.(published, toPublish);
  }
  return { job, items, added, published };
}
