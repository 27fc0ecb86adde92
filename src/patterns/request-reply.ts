import { randomUUID } from 'node:crypto';
import type { Broker, Consumer, Delivery, QueueOptions } from '../broker/contract.js';
import { envelopeMessage } from '../broker/envelope-message.js';
import { replyAddressOf, replyChannelsOf, type ReplyChannel } from '../broker/reply-channel.js';
import { decode, encode } from '../protocol/codec.js';
import {
  assertEnvelope,
  createEnvelope,
  MessageType,
  type Envelope,
  type Headers,
} from '../protocol/envelope.js';
import { BrokerError, ErrorCode, QtuneError, errorCode, toError } from '../protocol/errors.js';
import { deadReason } from './work-queue.js';

/** Header marking a reply as a remote failure; its payload is `{ error: { code, message } }`. */
export const REPLY_ERROR_HEADER = 'x-qtune-error';

/** The remote handler failed; `code` and `message` are the remote ones. */
export class RemoteError extends QtuneError {
  /** The queue the request was sent to. */
  readonly queue: string;
  constructor(code: ErrorCode, message: string, queue: string) {
    super(code, message);
    this.queue = queue;
  }
}

export interface RequesterOptions {
  /** Time to wait for a reply, per call unless the call says otherwise (default: 30000 ms). */
  timeoutMs?: number;
  /** Name of the private reply queue (default: `qtune.reply.<uuid>`). */
  replyQueue?: string;
  /**
   * Receive replies without a reply queue where the broker can (RabbitMQ's direct reply-to;
   * default: true unless `replyQueue` is given). Replies in flight when the connection drops
   * are then lost, and their requests time out.
   */
  directReply?: boolean;
}

export interface RequestOptions {
  /** Time to wait for this reply (default: the requester's timeoutMs). */
  timeoutMs?: number;
  /** Task name put on the request envelope. */
  task?: string;
  headers?: Headers;
  /** Cancels the wait; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

interface Pending {
  queue: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
  cleanup: () => void;
}

/**
 * Sends requests and awaits their replies over one temporary reply queue, matching replies to
 * calls by correlation id. Create with {@link Requester.create}; close when done.
 */
export class Requester {
  readonly #broker: Broker;
  readonly #replyQueue: string;
  readonly #timeoutMs: number;
  readonly #pending = new Map<string, Pending>();
  readonly #declared = new Set<string>();
  #consumer: Consumer | undefined;
  #replyChannel: ReplyChannel | undefined;
  #closed = false;

  private constructor(broker: Broker, replyQueue: string, timeoutMs: number) {
    this.#broker = broker;
    this.#replyQueue = replyQueue;
    this.#timeoutMs = timeoutMs;
  }

  /**
   * Opens a direct reply channel where the broker has one, else declares the temporary reply
   * queue, and starts listening.
   */
  static async create(broker: Broker, options: RequesterOptions = {}): Promise<Requester> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    const replyChannels = replyChannelsOf(broker);
    if (
      replyChannels !== undefined &&
      options.replyQueue === undefined &&
      options.directReply !== false
    ) {
      // No reply can come before the first request, which needs the requester.
      const to: { handle?: (body: Buffer) => void } = {};
      const channel = await replyChannels.openReplyChannel((reply) => to.handle?.(reply.body));
      const requester = new Requester(broker, channel.replyTo, timeoutMs);
      requester.#replyChannel = channel;
      to.handle = (body) => requester.#onReplyBody(body);
      return requester;
    }
    const replyQueue = options.replyQueue ?? `qtune.reply.${randomUUID()}`;
    const requester = new Requester(broker, replyQueue, timeoutMs);
    await broker.declareQueue(replyQueue, { temporary: true, durable: false });
    requester.#consumer = await broker.consume(replyQueue, (d) => requester.#onReply(d), {
      prefetch: 100,
    });
    return requester;
  }

  /** Name of this requester's reply queue. */
  get replyQueue(): string {
    return this.#replyQueue;
  }

  /** Calls not yet answered. */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Sends `payload` as a request to `queue` and resolves with the reply's payload. Rejects with
   * {@link RemoteError} when the remote handler failed, and with a QtuneError REPLY_TIMEOUT
   * when no reply came in time.
   */
  async request<R = unknown>(
    queue: string,
    payload: unknown,
    options: RequestOptions = {},
  ): Promise<R> {
    if (this.#closed) {
      throw new BrokerError(ErrorCode.BrokerState, `requester on "${this.#replyQueue}" is closed`);
    }
    options.signal?.throwIfAborted();
    const timeoutMs = options.timeoutMs ?? this.#timeoutMs;
    const env = createEnvelope({
      type: MessageType.Request,
      payload,
      replyTo: this.#replyQueue,
      deadline: Date.now() + timeoutMs,
      ...(options.task !== undefined && { task: options.task }),
      ...(options.headers !== undefined && { headers: options.headers }),
    });
    assertEnvelope(env, `request to queue "${queue}"`);
    const answer = new Promise<unknown>((resolve, reject) => {
      const onAbort = (): void => {
        this.#settle(env.id)?.reject(toError(options.signal?.reason));
      };
      const timer = setTimeout(() => {
        this.#settle(env.id)?.reject(
          new QtuneError(
            ErrorCode.ReplyTimeout,
            `request ${env.id} to queue "${queue}" got no reply within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      options.signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(env.id, {
        queue,
        resolve,
        reject,
        timer,
        cleanup: () => options.signal?.removeEventListener('abort', onAbort),
      });
    });
    // The call may be settled (aborted, timed out, requester closed) while the publish below is
    // still in progress, before anything awaits `answer`: that must not be an unhandled rejection.
    answer.catch(() => {});
    try {
      if (!this.#declared.has(queue)) {
        await this.#broker.declareQueue(queue);
        this.#declared.add(queue);
      }
      if (this.#replyChannel) await this.#replyChannel.publish(queue, [envelopeMessage(env)]);
      else await this.#broker.publish(queue, [envelopeMessage(env)]);
    } catch (err) {
      this.#settle(env.id);
      throw err;
    }
    return (await answer) as R;
  }

  /** Rejects the calls still waiting, stops listening and deletes the reply queue. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const id of [...this.#pending.keys()]) {
      this.#settle(id)?.reject(
        new BrokerError(
          ErrorCode.BrokerState,
          `requester on "${this.#replyQueue}" closed before request ${id} got its reply`,
        ),
      );
    }
    if (this.#replyChannel) {
      await this.#replyChannel.close();
      return;
    }
    await this.#consumer?.cancel();
    await this.#broker.deleteQueue(this.#replyQueue).catch(() => {});
  }

  /** Removes a pending call and returns it, or undefined when it already settled. */
  #settle(id: string): Pending | undefined {
    const call = this.#pending.get(id);
    if (!call) return undefined;
    this.#pending.delete(id);
    clearTimeout(call.timer);
    call.cleanup();
    return call;
  }

  async #onReply(delivery: Delivery): Promise<void> {
    try {
      this.#onReplyBody(delivery.body);
    } finally {
      await delivery.ack();
    }
  }

  /** Settles the call a reply answers; drops a reply that answers none or cannot be read. */
  #onReplyBody(body: Buffer): void {
    try {
      const env = decode(body, { source: `queue "${this.#replyQueue}"` });
      const call = env.correlationId !== undefined ? this.#settle(env.correlationId) : undefined;
      // A reply with no waiting call (late, after a timeout) is dropped.
      if (!call) return;
      if (env.headers?.[REPLY_ERROR_HEADER] === true) {
        const error = (env.payload as { error?: { code?: unknown; message?: unknown } } | null)
          ?.error;
        const code =
          typeof error?.code === 'string' ? (error.code as ErrorCode) : ErrorCode.HandlerFailed;
        const message =
          typeof error?.message === 'string' ? error.message : 'remote handler failed';
        call.reject(new RemoteError(code, message, call.queue));
      } else {
        call.resolve(env.payload);
      }
    } catch {
      // Not a reply we can read, on our private queue: drop it.
    }
  }
}

/** Handles one request; the resolved value is the reply, a throw becomes an error reply. */
export type RequestHandler<P = unknown, R = unknown> = (
  payload: P,
  request: Envelope<P>,
) => R | Promise<R>;

export interface ServeOptions {
  /** Requests handled at once (default: 10). */
  prefetch?: number;
  /** Policy of the request queue when it is created (default: the broker's defaults). */
  queueOptions?: QueueOptions;
}

/** How a request was answered: the handler's value, or what it threw. */
export type ReplyOutcome = { ok: true; value: unknown } | { ok: false; error: Error };

/**
 * Decodes a request delivered on `queue`; a body that cannot be decoded is dead-lettered with
 * the reason, and undefined returned.
 */
export async function decodeRequest<P = unknown>(
  delivery: Delivery,
  queue: string,
): Promise<Envelope<P> | undefined> {
  try {
    return decode(delivery.body, {
      source: `queue "${queue}"`,
      messageId: delivery.id,
      attempt: delivery.deliveryCount,
    }) as Envelope<P>;
  } catch (err) {
    await delivery.deadLetter(deadReason(toError(err)));
    return undefined;
  }
}

/** True when the requester stopped waiting: the request's deadline has passed. */
export function pastDeadline(request: Envelope, now = Date.now()): boolean {
  return request.deadline !== undefined && now >= request.deadline;
}

function errorReply(request: Envelope, code: string, message: string): Envelope {
  return createEnvelope({
    type: MessageType.Reply,
    payload: { error: { code, message } },
    correlationId: request.id,
    headers: { [REPLY_ERROR_HEADER]: true },
  });
}

/**
 * Sends the reply to `request`, with correlationId = its id: the outcome's value, or its error
 * as an error reply (also when the value is not JSON). It goes to the transport's reply address
 * (RabbitMQ's direct reply-to rewrites it on the way) or else the envelope's replyTo; a request
 * with neither gets no reply. The request is not settled here.
 */
export async function sendReply(
  broker: Broker,
  delivery: Delivery,
  request: Envelope,
  outcome: ReplyOutcome,
): Promise<void> {
  // RabbitMQ's direct reply-to rewrites the address on the way: the transport's one wins.
  const replyTo = replyAddressOf(delivery, request.replyTo);
  if (replyTo === undefined) return;
  const reply = outcome.ok
    ? createEnvelope({ type: MessageType.Reply, payload: outcome.value, correlationId: request.id })
    : errorReply(request, errorCode(outcome.error), outcome.error.message);
  let body: Buffer;
  try {
    body = encode(reply);
  } catch (err) {
    body = encode(
      errorReply(request, ErrorCode.HandlerFailed, `reply is not JSON: ${toError(err).message}`),
    );
  }
  await broker.publish(replyTo, [{ id: reply.id, body }]);
}

/**
 * Serves requests from `queue`: replies to each request's replyTo with correlationId = its id.
 * A handler throw is sent back as an error reply. Requests past their deadline (the requester
 * gave up) are dropped; bodies that cannot be decoded are dead-lettered.
 */
export async function serveRequests<P = unknown, R = unknown>(
  broker: Broker,
  queue: string,
  handler: RequestHandler<P, R>,
  options: ServeOptions = {},
): Promise<Consumer> {
  await broker.declareQueue(queue, options.queueOptions);
  return broker.consume(
    queue,
    async (delivery) => {
      const request = await decodeRequest<P>(delivery, queue);
      if (request === undefined) return;
      if (pastDeadline(request)) {
        await delivery.ack();
        return;
      }
      let outcome: ReplyOutcome;
      try {
        outcome = { ok: true, value: await handler(request.payload, request) };
      } catch (err) {
        outcome = { ok: false, error: toError(err) };
      }
      await sendReply(broker, delivery, request, outcome);
      await delivery.ack();
    },
    { prefetch: options.prefetch ?? 10 },
  );
}
