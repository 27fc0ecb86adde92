import { z } from 'zod';
import type { Broker, Consumer, Delivery, OutgoingMessage } from '../broker/contract.js';
import { envelopeMessage } from '../broker/envelope-message.js';
import { decode } from '../protocol/codec.js';
import {
  assertEnvelope,
  createEnvelope,
  MessageType,
  type Envelope,
  type Headers,
} from '../protocol/envelope.js';
import { assertName } from '../protocol/names.js';
import { DecodeError, ErrorCode, errorCode, toError } from '../protocol/errors.js';
import type { TaskResult } from '../protocol/result.js';

/** The queue where results of `queue`'s tasks go unless a task names another `replyTo`. */
export function resultQueueOf(queue: string): string {
  return `${queue}.results`;
}

/** One task to submit. */
export interface TaskItem<P = unknown> {
  payload: P;
  /** Idempotency key: results are stored by it, so a re-run updates rather than duplicates. */
  key?: string;
  /** Task name, for workers that serve several kinds of task. */
  task?: string;
  /** 0 (default) and up; higher is delivered first. */
  priority?: number;
  /** Epoch ms after which the task must not start. */
  deadline?: number;
  headers?: Headers;
  /** Envelope and message id (default: a fresh UUID). */
  id?: string;
  /** Deliver no earlier than this many ms from now (default: 0). */
  delayMs?: number;
}

export interface SubmitOptions {
  /** Where results go (default: `resultQueueOf(queue)`). */
  replyTo?: string;
  /** Messages per publish call (default: 500). */
  batchSize?: number;
  /**
   * Publish calls in flight at once: more than one overlaps a batch's round trip to the broker
   * with the next batches, and batches may then reach the queue out of order (default: 1).
   */
  inFlight?: number;
  /** Declare the task queue and the result queue first, keeping existing policies (default: true). */
  declare?: boolean;
  /** How an item is named in errors, from its 0-based index (default: `task N`, 1-based). */
  label?: (index: number) => string;
}

/** Builds the `task` envelope of `item` with `replyTo`. */
export function createTaskEnvelope<P>(item: TaskItem<P>, replyTo: string): Envelope<P> {
  return createEnvelope<P>({
    type: MessageType.Task,
    payload: item.payload,
    replyTo,
    ...(item.id !== undefined && { id: item.id }),
    ...(item.key !== undefined && { key: item.key }),
    ...(item.task !== undefined && { task: item.task }),
    ...(item.deadline !== undefined && { deadline: item.deadline }),
    ...(item.headers !== undefined && { headers: item.headers }),
  });
}

/**
 * Builds the task envelope of every item and checks it with the schema a worker reads it with
 * (src/protocol/envelope.ts): throws an InputError naming the item and the field
 * (`task 3: invalid envelope at "key": ...`) for a task a worker would dead-letter as
 * INVALID_ENVELOPE, and for a queue name qtune refuses. Returns the envelopes.
 */
export function checkTaskItems<P>(
  queue: string,
  items: readonly TaskItem<P>[],
  options: Pick<SubmitOptions, 'replyTo' | 'label'> = {},
): Envelope<P>[] {
  assertName('queue', queue);
  const replyTo = options.replyTo ?? resultQueueOf(queue);
  const label = options.label ?? ((i: number) => `task ${i + 1}`);
  return items.map((item, i) => {
    const env = createTaskEnvelope(item, replyTo);
    assertEnvelope(env, label(i));
    return env;
  });
}

/**
 * Publishes one task envelope per item to `queue`, results directed to `resultQueueOf(queue)`;
 * resolves with the task ids, in order, once the broker has made every batch durable. Every
 * item is checked first ({@link checkTaskItems}): one invalid item publishes nothing.
 */
export async function submitTasks<P>(
  broker: Broker,
  queue: string,
  items: readonly TaskItem<P>[],
  options: SubmitOptions = {},
): Promise<string[]> {
  const replyTo = options.replyTo ?? resultQueueOf(queue);
  const envelopes = checkTaskItems(queue, items, options);
  const batchSize = Math.max(1, options.batchSize ?? 500);
  if (options.declare !== false) {
    await broker.declareQueue(queue);
    await broker.declareQueue(replyTo);
  }
  const inFlight = Math.max(1, options.inFlight ?? 1);
  const ids: string[] = [];
  const pending: Promise<unknown>[] = [];
  try {
    for (let i = 0; i < items.length; i += batchSize) {
      const messages: OutgoingMessage[] = items.slice(i, i + batchSize).map((item, j) => {
        const msg: OutgoingMessage = envelopeMessage(envelopes[i + j]!);
        if (item.priority !== undefined) msg.priority = item.priority;
        if (item.delayMs !== undefined) msg.delayMs = item.delayMs;
        return msg;
      });
      for (const m of messages) ids.push(m.id!);
      const published = broker.publish(queue, messages);
      // Awaited below, in order; a later batch failing first must not count as unhandled.
      published.catch(() => undefined);
      pending.push(published);
      if (pending.length >= inFlight) await pending.shift();
    }
    await Promise.all(pending);
  } catch (err) {
    // Let the batches still in flight settle, so none is left running after the rejection.
    await Promise.allSettled(pending);
    throw err;
  }
  return ids;
}

/**
 * Builds the `result` envelope answering a task: correlationId = the task id, key and task name
 * copied from the result, `headers` (for example a batch id) carried along.
 */
export function createResultEnvelope<V>(
  result: TaskResult<V>,
  headers?: Headers,
): Envelope<TaskResult<V>> {
  return createEnvelope<TaskResult<V>>({
    type: MessageType.Result,
    payload: result,
    correlationId: result.taskId,
    ...(result.key !== undefined && { key: result.key }),
    ...(result.task !== undefined && { task: result.task }),
    ...(headers !== undefined && Object.keys(headers).length > 0 && { headers }),
  });
}

/** The message carrying `result`; throws when the result's value is not JSON-serializable. */
export function resultMessage(result: TaskResult, headers?: Headers): OutgoingMessage {
  return envelopeMessage(createResultEnvelope(result, headers));
}

/**
 * Publishes results to `replyTo` (a task's replyTo, or `resultQueueOf(queue)`) in one call;
 * resolves once the broker has them. A worker calls this and waits BEFORE acking the tasks.
 */
export async function publishResult(
  broker: Broker,
  replyTo: string,
  results: TaskResult | readonly TaskResult[],
  headers?: Headers,
): Promise<void> {
  const list: readonly TaskResult[] = Array.isArray(results) ? results : [results as TaskResult];
  if (list.length === 0) return;
  await broker.publish(
    replyTo,
    list.map((r) => resultMessage(r, headers)),
  );
}

/** Schema of a TaskResult read from the wire; unknown fields are kept. */
export const taskResultSchema = z.looseObject({
  taskId: z.string(),
  key: z.string().optional(),
  task: z.string().optional(),
  ok: z.boolean(),
  value: z.unknown().optional(),
  error: z.looseObject({ code: z.string(), message: z.string() }).optional(),
  worker: z.looseObject({
    host: z.string(),
    pid: z.number(),
    id: z.string(),
    gpus: z.array(z.looseObject({ name: z.string(), memoryMiB: z.number() })).optional(),
    pricePerHour: z.number().optional(),
  }),
  startedAt: z.number(),
  finishedAt: z.number(),
  durationMs: z.number(),
  attempt: z.number(),
});

/**
 * Decodes a delivery as a `result` envelope holding a TaskResult. Throws DecodeError naming the
 * queue when the body is not JSON, not an envelope of type `result`, or its payload does not
 * validate. An error code this version does not know is kept as it is.
 */
export function decodeResult(delivery: Pick<Delivery, 'id' | 'queue' | 'body'>): {
  result: TaskResult;
  envelope: Envelope;
} {
  const where = `queue "${delivery.queue}"`;
  const envelope = decode(delivery.body, { source: where, messageId: delivery.id });
  if (envelope.type !== MessageType.Result) {
    throw new DecodeError(
      ErrorCode.InvalidEnvelope,
      `${where}: message ${envelope.id} has type "${envelope.type}", expected "result"`,
    );
  }
  const parsed = taskResultSchema.safeParse(envelope.payload);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.length ? issue.path.join('.') : '(root)';
    throw new DecodeError(
      ErrorCode.InvalidEnvelope,
      `${where}: result ${envelope.id} is invalid at "payload.${path}": ${issue?.message ?? 'invalid'}`,
    );
  }
  return { result: parsed.data as TaskResult, envelope };
}

export interface ConsumeResultsOptions {
  /** Queue to read (default: `resultQueueOf(queue)`). */
  resultQueue?: string;
  /** Unsettled results held at once (default: 100). */
  prefetch?: number;
  /**
   * Called with a message that is not a valid result; it is dead-lettered (default: ignore).
   */
  onInvalid?: (error: Error, delivery: Delivery) => void;
}

/**
 * Delivers the results of `queue`'s tasks to `handler`, acking each after the handler returns.
 * A handler throw nacks the result for another delivery; a message that is not a valid result
 * is dead-lettered with its reason.
 */
export async function consumeResults(
  broker: Broker,
  queue: string,
  handler: (result: TaskResult, envelope: Envelope) => void | Promise<void>,
  options: ConsumeResultsOptions = {},
): Promise<Consumer> {
  const source = options.resultQueue ?? resultQueueOf(queue);
  await broker.declareQueue(source);
  return broker.consume(
    source,
    async (delivery) => {
      let decoded: { result: TaskResult; envelope: Envelope };
      try {
        decoded = decodeResult(delivery);
      } catch (err) {
        const error = toError(err);
        options.onInvalid?.(error, delivery);
        await delivery.deadLetter(deadReason(error));
        return;
      }
      try {
        await handler(decoded.result, decoded.envelope);
      } catch (err) {
        await delivery.nack({ error: deadReason(toError(err)) });
        return;
      }
      await delivery.ack();
    },
    { prefetch: options.prefetch ?? 100 },
  );
}

/** A dead-letter or nack reason, `CODE: message`: the code of a QtuneError, else HANDLER_FAILED. */
export function deadReason(error: Error): string {
  return `${errorCode(error)}: ${error.message}`;
}
