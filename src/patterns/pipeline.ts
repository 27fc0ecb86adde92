import { randomUUID } from 'node:crypto';
import type { Broker } from '../broker/contract.js';
import type { Envelope } from '../protocol/envelope.js';
import { ErrorCode, QtuneError, toError } from '../protocol/errors.js';
import type { TaskResult } from '../protocol/result.js';
import {
  decodeResult,
  deadReason,
  resultQueueOf,
  submitTasks,
  type TaskItem,
} from './work-queue.js';

/** Task header naming the batch a task belongs to; workers copy it onto the result. */
export const BATCH_HEADER = 'x-qtune-batch';
/** Task header holding how many tasks the batch has. */
export const BATCH_TOTAL_HEADER = 'x-qtune-batch-total';

/** The queue where the results of batch `batchId` of `queue` are collected. */
export function batchResultQueueOf(queue: string, batchId: string): string {
  return `${resultQueueOf(queue)}.${batchId}`;
}

export interface VentilateOptions {
  /** Batch id (default: a fresh UUID). */
  batchId?: string;
  /** Where results go (default: `batchResultQueueOf(queue, batchId)`). */
  resultQueue?: string;
  /** Messages per publish call (default: 500). */
  batchSize?: number;
}

/** What {@link ventilate} sent. */
export interface Ventilated {
  batchId: string;
  /** Number of tasks in the batch. */
  count: number;
  taskIds: string[];
  resultQueue: string;
}

/**
 * The ventilator: publishes `items` as one batch of tasks on `queue`, each tagged with the batch
 * id and the batch size, results directed to the batch's own durable result queue (declared
 * first, so results wait there until a sink collects them).
 */
export async function ventilate<P>(
  broker: Broker,
  queue: string,
  items: readonly TaskItem<P>[],
  options: VentilateOptions = {},
): Promise<Ventilated> {
  const batchId = options.batchId ?? randomUUID();
  const resultQueue = options.resultQueue ?? batchResultQueueOf(queue, batchId);
  const tagged = items.map((item) => ({
    ...item,
    headers: { ...item.headers, [BATCH_HEADER]: batchId, [BATCH_TOTAL_HEADER]: items.length },
  }));
  const taskIds = await submitTasks(broker, queue, tagged, {
    replyTo: resultQueue,
    ...(options.batchSize !== undefined && { batchSize: options.batchSize }),
  });
  return { batchId, count: items.length, taskIds, resultQueue };
}

/** How a batch ended. `done + failed === total` once complete. */
export interface BatchSummary {
  batchId: string;
  total: number;
  /** Tasks whose first result was a success. */
  done: number;
  /** Tasks whose first result was a failure. */
  failed: number;
  /** Results seen again for a task already counted (redeliveries); not counted twice. */
  duplicates: number;
}

export interface CollectOptions {
  /** Batch size (default: read from the results' `x-qtune-batch-total` header). */
  total?: number;
  /** Queue to read (default: `batchResultQueueOf(queue, batchId)`). */
  resultQueue?: string;
  /** Called once per task with its first result, before the result is acked. */
  onResult?: (result: TaskResult, envelope: Envelope) => void | Promise<void>;
  /** Rejects the wait with the signal's reason. */
  signal?: AbortSignal;
  /** Rejects with REPLY_TIMEOUT when the batch is not complete within this many ms (default: none). */
  timeoutMs?: number;
  /** Delete the result queue once the batch is complete (default: true for the default queue). */
  deleteQueue?: boolean;
  /** Unsettled results held at once (default: 100). */
  prefetch?: number;
}

/**
 * The sink: reads batch `batchId`'s results and resolves once every task has one, counting a
 * task once however many results it gets. Results of another batch are dead-lettered (never
 * dropped); an `onResult` throw nacks the result for another delivery.
 */
export async function collectBatch(
  broker: Broker,
  queue: string,
  batchId: string,
  options: CollectOptions = {},
): Promise<BatchSummary> {
  const source = options.resultQueue ?? batchResultQueueOf(queue, batchId);
  const deleteQueue = options.deleteQueue ?? options.resultQueue === undefined;
  const summary: BatchSummary = {
    batchId,
    total: options.total ?? -1,
    done: 0,
    failed: 0,
    duplicates: 0,
  };
  const seen = new Set<string>();
  const claimed = new Set<string>();
  let finish!: (error?: Error) => void;
  const finished = new Promise<void>((resolve, reject) => {
    finish = (error) => (error ? reject(error) : resolve());
  });
  const complete = (): boolean => summary.total >= 0 && seen.size >= summary.total;
  if (complete()) finish();

  await broker.declareQueue(source);
  const consumer = await broker.consume(
    source,
    async (delivery) => {
      let decoded: ReturnType<typeof decodeResult>;
      try {
        decoded = decodeResult(delivery);
      } catch (err) {
        await delivery.deadLetter(deadReason(toError(err)));
        return;
      }
      const { result, envelope } = decoded;
      const headers = envelope.headers ?? {};
      if (headers[BATCH_HEADER] !== batchId) {
        await delivery.deadLetter(
          `${ErrorCode.BadInput}: result ${envelope.id} belongs to batch "${String(headers[BATCH_HEADER])}", not "${batchId}"`,
        );
        return;
      }
      // Claimed before onResult so that a concurrent duplicate is not handed over twice.
      if (claimed.has(result.taskId)) {
        summary.duplicates++;
        await delivery.ack();
        return;
      }
      claimed.add(result.taskId);
      try {
        await options.onResult?.(result, envelope);
      } catch (err) {
        claimed.delete(result.taskId);
        await delivery.nack({ error: deadReason(toError(err)) });
        return;
      }
      await delivery.ack();
      seen.add(result.taskId);
      if (result.ok) summary.done++;
      else summary.failed++;
      const total = headers[BATCH_TOTAL_HEADER];
      if (summary.total < 0 && typeof total === 'number') summary.total = total;
      if (complete()) finish();
    },
    { prefetch: options.prefetch ?? 100 },
  );

  const onAbort = (): void => finish(toError(options.signal?.reason));
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) onAbort();
  const timer =
    options.timeoutMs !== undefined
      ? setTimeout(
          () =>
            finish(
              new QtuneError(
                ErrorCode.ReplyTimeout,
                `batch "${batchId}" of queue "${queue}": ${seen.size} of ${summary.total < 0 ? '?' : summary.total} results after ${options.timeoutMs} ms`,
              ),
            ),
          options.timeoutMs,
        )
      : undefined;
  try {
    await finished;
  } finally {
    if (timer) clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    await consumer.cancel();
  }
  if (deleteQueue) await broker.deleteQueue(source);
  return summary;
}

export interface RunPipelineOptions extends VentilateOptions {
  onResult?: CollectOptions['onResult'];
  signal?: AbortSignal;
  timeoutMs?: number;
}

/** Ventilates `items` on `queue` and collects the whole batch's results (workers do the rest). */
export async function runPipeline<P>(
  broker: Broker,
  queue: string,
  items: readonly TaskItem<P>[],
  options: RunPipelineOptions = {},
): Promise<BatchSummary> {
  const sent = await ventilate(broker, queue, items, options);
  return collectBatch(broker, queue, sent.batchId, {
    total: sent.count,
    resultQueue: sent.resultQueue,
    deleteQueue: options.resultQueue === undefined,
    ...(options.onResult && { onResult: options.onResult }),
    ...(options.signal && { signal: options.signal }),
    ...(options.timeoutMs !== undefined && { timeoutMs: options.timeoutMs }),
  });
}
