import { decodeResult } from '../patterns/work-queue.js';
import { DecodeError, ErrorCode, toError } from '../protocol/errors.js';
import { keyOf } from '../protocol/key.js';
import type { TaskResult } from '../protocol/result.js';
import type { ResultRow } from '../store/results.js';

/** What the sink needs of a delivered message to turn it into a row. */
export interface SinkMessage {
  readonly id: string;
  readonly queue: string;
  readonly body: Buffer;
}

/** The rows of a batch of messages, and the messages that were not valid results. */
export interface DecodedBatch {
  rows: ResultRow[];
  /** Index into the batch of each message that is not a valid result, with the reason. */
  invalid: Array<{ index: number; reason: string }>;
}

/** The table row of a result, keyed by `keyFields` of its value, else its key, else its task id. */
export function rowOf(result: TaskResult, keyFields: readonly string[] = []): ResultRow {
  let id: string;
  if (keyFields.length > 0) {
    if (!result.ok) {
      // A failed result has no value to take key fields from: only its key can name the row.
      if (result.key === undefined)
        throw new DecodeError(
          ErrorCode.InvalidEnvelope,
          `failed result of task ${result.taskId} has no idempotency key, so key fields ${JSON.stringify(keyFields)} cannot name its row`,
        );
      id = result.key;
    } else {
      try {
        id = keyOf(result.value, keyFields);
      } catch {
        throw new DecodeError(
          ErrorCode.InvalidEnvelope,
          `result of task ${result.taskId}: its value lacks one of the key fields ${JSON.stringify(keyFields)}`,
        );
      }
    }
  } else {
    id = result.key ?? result.taskId;
  }
  const row: ResultRow = {
    id,
    taskId: result.taskId,
    ok: result.ok,
    host: result.worker.host,
    pid: result.worker.pid,
    workerId: result.worker.id,
    attempt: result.attempt,
    durationMs: result.durationMs,
    startedAt: result.startedAt,
    finishedAt: result.finishedAt,
  };
  if (result.key !== undefined) row.key = result.key;
  if (result.value !== undefined) row.value = result.value;
  if (result.error) {
    row.errorCode = result.error.code;
    row.errorMessage = result.error.message;
  }
  const gpus = result.worker.gpus;
  if (gpus && gpus.length > 0)
    row.gpu = gpus.map((g) => `${g.name} (${g.memoryMiB} MiB)`).join('; ');
  const price = (result.worker as { pricePerHour?: unknown }).pricePerHour;
  if (typeof price === 'number' && Number.isFinite(price)) row.pricePerHour = price;
  return row;
}

/** Decodes each message of a batch into its row; a message that is not a valid result is set aside with its reason. */
export function decodeRows(
  messages: readonly SinkMessage[],
  keyFields: readonly string[] = [],
): DecodedBatch {
  const out: DecodedBatch = { rows: [], invalid: [] };
  decodeRange((i) => messages[i]!, 0, messages.length, keyFields, out);
  return out;
}

/**
 * Decodes `count` messages `chunkRows` at a time and yields each chunk's rows (never an empty
 * chunk); a message that is not a valid result goes to `invalid` with its index among all
 * `count`. Messages are asked for (`messageAt`) only when their chunk is decoded, so a writer
 * that writes each chunk before taking the next holds one chunk's rows at a time.
 */
export function* decodeRowChunks(
  count: number,
  messageAt: (index: number) => SinkMessage,
  chunkRows: number,
  keyFields: readonly string[],
  invalid: DecodedBatch['invalid'],
): Generator<ResultRow[]> {
  for (let from = 0; from < count; from += chunkRows) {
    const out: DecodedBatch = { rows: [], invalid };
    decodeRange(messageAt, from, Math.min(count, from + chunkRows), keyFields, out);
    if (out.rows.length > 0) yield out.rows;
  }
}

/** Decodes messages `from` to `to` (exclusive) into `out`. */
function decodeRange(
  messageAt: (index: number) => SinkMessage,
  from: number,
  to: number,
  keyFields: readonly string[],
  out: DecodedBatch,
): void {
  for (let index = from; index < to; index++) {
    try {
      out.rows.push(rowOf(decodeResult(messageAt(index)).result, keyFields));
    } catch (err) {
      const e = toError(err);
      out.invalid.push({
        index,
        reason: e instanceof DecodeError ? `${e.code}: ${e.message}` : e.message,
      });
    }
  }
}
