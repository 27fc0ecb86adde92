import { EventEmitter } from 'node:events';
import type {
  Broker,
  Consumer,
  Delivery,
  OutgoingMessage,
  QueueOptions,
} from '../broker/contract.js';
import { replyAddressOf } from '../broker/reply-channel.js';
import { Ticker } from '../broker/ticker.js';
import { publishEvent } from '../patterns/pubsub.js';
import { deadReason, resultMessage, resultQueueOf } from '../patterns/work-queue.js';
import { decode } from '../protocol/codec.js';
import { MessageType, type Envelope, type Headers } from '../protocol/envelope.js';
import {
  BrokerError,
  DecodeError,
  ErrorCode,
  InputError,
  TaskError,
  errorCode,
  toError,
} from '../protocol/errors.js';
import type { TaskGpu, TaskResult, WorkerInfo } from '../protocol/result.js';
import type { TaskContext, TaskHandler } from './handlers/types.js';
import { getHostInfo } from './host-info.js';
import { childLogger, silentLogger, type Logger } from './logger.js';

/** Delay before a failed task is delivered again: `baseMs * factor^(attempt-1)`, capped. */
export interface BackoffOptions {
  /** Delay after the first failed attempt, in ms (default: 1000). */
  baseMs?: number;
  /** Longest delay, in ms (default: 60000). */
  maxMs?: number;
  /** Growth per attempt (default: 2). */
  factor?: number;
  /** Fraction of the delay taken away at random, 0 to 1, so retries spread out (default: 0.2). */
  jitter?: number;
}

const BACKOFF_DEFAULTS = { baseMs: 1_000, maxMs: 60_000, factor: 2, jitter: 0.2 } as const;

/** The retry delay after failed attempt number `attempt` (1-based). */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const base = options.baseMs ?? BACKOFF_DEFAULTS.baseMs;
  const max = options.maxMs ?? BACKOFF_DEFAULTS.maxMs;
  const factor = options.factor ?? BACKOFF_DEFAULTS.factor;
  const jitter = Math.min(1, Math.max(0, options.jitter ?? BACKOFF_DEFAULTS.jitter));
  const raw = Math.min(max, base * factor ** Math.max(0, attempt - 1));
  return Math.max(0, Math.round(raw * (1 - jitter * random())));
}

export interface WorkerOptions {
  broker: Broker;
  /** Queue to consume; declared on start, keeping an existing policy. */
  queue: string;
  handler: TaskHandler;
  /**
   * Handlers run at once (default: 1, or one per GPU with `gpus`; an exec or HTTP handler can
   * usually take more). A task whose handler returned frees its slot while its result is stored.
   */
  concurrency?: number;
  /**
   * GPU slots: each running task holds one of these GPUs (the least busy, ties to the first
   * listed), sees it as `ctx.gpu`, and its result records it as `worker.gpu`. The concurrency
   * must be a multiple of their number: that many tasks share each GPU (default: none).
   */
  gpus?: readonly TaskGpu[];
  /** Deliveries held from the broker at once: waiting, running or being settled (default: 2 × concurrency). */
  prefetch?: number;
  /** Time limit per task in ms; past it the task's signal aborts and it fails with TIMEOUT (default: none). */
  timeoutMs?: number;
  /** Attempts before a failing task is dead-lettered with a failed result (default: 3). */
  maxAttempts?: number;
  /** Retry delays (default: 1 s doubling up to 60 s, 20% jitter). */
  backoff?: BackoffOptions;
  /** Extend every held delivery's lease at a third of its length, so long tasks keep it (default: true). */
  heartbeat?: boolean;
  /** After a task's signal aborts, how long to wait for its handler to settle before moving on, in ms (default: 5000). */
  abortGraceMs?: number;
  /** Where results go for tasks without a replyTo (default: `<queue>.results`). */
  resultQueue?: string;
  /** Policy used if the task queue does not exist yet (default: the broker's defaults). */
  queueOptions?: QueueOptions;
  /** Publishes each `ctx.progress(info)` as an event on this topic (default: none, events only). */
  progressTopic?: string;
  /** Logger, e.g. a pino instance (default: silent). */
  logger?: Logger;
  /** Who this worker is (default: probed with {@link getHostInfo}). */
  hostInfo?: WorkerInfo;
  /**
   * Called synchronously as tasks start and end, without building event objects: the seam
   * for metrics (src/worker/metrics.ts), cheaper than the `task:*` events on the hot path.
   */
  observer?: TaskObserver;
}

/** How a task attempt ended, for a {@link TaskObserver}. */
export type TaskOutcome = 'completed' | 'retried' | 'dead_lettered';

/** Sees each task attempt start and end (see {@link WorkerOptions.observer}). */
export interface TaskObserver {
  /** A handler starts a task published at `createdAt` (epoch ms), when its envelope says. */
  taskStarted(createdAt: number | undefined): void;
  /**
   * An attempt ended: `durationMs` is how long its handler ran (undefined for a message that
   * could not be decoded, which never ran).
   */
  taskFinished(outcome: TaskOutcome, durationMs: number | undefined): void;
}

/** What every task event carries. */
export interface TaskEvent {
  queue: string;
  taskId: string;
  key?: string;
  task?: string;
  attempt: number;
  /** When the task was published (its envelope's `createdAt`, epoch ms), when it says. */
  createdAt?: number;
}

/** Typed events of a {@link Worker}. */
export interface WorkerEvents {
  'task:started': (event: TaskEvent) => void;
  'task:progress': (event: TaskEvent & { info: unknown }) => void;
  'task:completed': (event: TaskEvent & { result: TaskResult }) => void;
  /** An attempt failed; `willRetry` tells whether it goes back to the queue. */
  'task:failed': (
    event: TaskEvent & {
      error: Error;
      code: ErrorCode;
      willRetry: boolean;
      delayMs?: number;
      /** How long the handler ran, in ms (absent for a task stopped with the worker). */
      durationMs?: number;
    },
  ) => void;
  /** A task was moved to the dead-letter queue (undecodable, past its deadline, or out of attempts). */
  'task:dead': (event: TaskEvent & { reason: string }) => void;
  /** stop() finished: nothing is held any more. */
  stopped: () => void;
  /** Something went wrong outside any task's fate (a settle or a publish failed). */
  error: (error: Error) => void;
}

/** Counters of a worker since it started. */
export interface WorkerStats {
  queue: string;
  /** Epoch ms when the worker started. */
  startedAt: number;
  /** Tasks completed with a result. */
  done: number;
  /** Failed attempts, retried or not. */
  failed: number;
  /** Failed attempts sent back to the queue for a retry. */
  retried: number;
  /** Messages dead-lettered: undecodable, past their deadline, or out of attempts. */
  deadLettered: number;
  /** Tasks running now. */
  inFlight: number;
  /** Deliveries held but not started yet. */
  waiting: number;
  stopping: boolean;
}

export interface StopOptions {
  /** Time given to running tasks to finish before they are aborted and nacked, in ms (default: 30000). */
  graceMs?: number;
}

/**
 * One held delivery's state machine: `waiting` (prefetched, not started) → `running` (handler
 * executing) → `settling` (publishing the result, acking/nacking) → `settled`. stop() moves
 * `waiting` deliveries straight to `settled` (released) and, after the grace period, `running`
 * ones to `abandoned` (aborted and nacked without waiting for the handler).
 */
type HeldState = 'waiting' | 'running' | 'settling' | 'settled' | 'abandoned';

interface Held {
  delivery: Delivery;
  envelope: Envelope;
  state: HeldState;
  /** Made on first use (a handler reading ctx.signal, a timeout, a stop): most tasks need none. */
  controller?: AbortController;
  /** Why the task was aborted, once it was. */
  abortReason?: Error;
  /** Wakes #execute when the task is aborted while its handler runs. */
  wakeAbort?: () => void;
  /** Heartbeat period (a third of the lease) and when the next one is due, in epoch ms. */
  beatEvery?: number;
  nextBeatAt?: number;
  /** Whether it holds one of the `concurrency` slots: from its start until its handler is done. */
  slot?: boolean;
  /** With GPU slots: the GPU it runs on, and its position in the worker's list. */
  gpu?: { slot: number; info: TaskGpu };
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: Error };

interface Timing {
  startedAt: number;
  finishedAt: number;
}

const DEFAULT_GRACE_MS = 30_000;
const DEFAULT_ABORT_GRACE_MS = 5_000;
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A running worker: consumes a queue, runs each task through its handler with a concurrency
 * limit, publishes each result (confirmed, carrying the task's headers) before acking the task,
 * retries failures with backoff and dead-letters what cannot succeed, with a failed result.
 * Start one with {@link startWorker}.
 */
export class Worker {
  readonly queue: string;
  readonly info: WorkerInfo;
  readonly #broker: Broker;
  readonly #handler: TaskHandler;
  readonly #concurrency: number;
  /** GPU slots, and how many running tasks hold each (same positions). */
  readonly #gpus: readonly TaskGpu[];
  readonly #gpuLoad: number[];
  readonly #maxAttempts: number;
  readonly #timeoutMs: number | undefined;
  readonly #backoff: BackoffOptions;
  readonly #heartbeat: boolean;
  readonly #abortGraceMs: number;
  readonly #resultQueue: string;
  readonly #progressTopic: string | undefined;
  readonly #logger: Logger;
  /** Whether the logger writes debug lines (read once: per-task lines cost a child logger). */
  readonly #debug: boolean;
  readonly #events = new EventEmitter();
  readonly #held = new Set<Held>();
  readonly #waiting: Held[] = [];
  readonly #runs = new Map<Held, Promise<void>>();
  /**
   * Handlers running now. The concurrency limit counts these, not tasks whose result is still
   * being stored: the next task starts while the last one's result is committed.
   */
  #executing = 0;
  readonly #ops = new Set<Promise<void>>();
  /** Held deliveries whose lease the heartbeat extends, and the one timer that does it. */
  readonly #beating = new Set<Held>();
  readonly #beatTicker = new Ticker(() => this.#beat());
  #consumer: Consumer | undefined;
  #started = false;
  #stopping: Promise<void> | undefined;
  /** What each task's context calls back into (one object per worker, not per task). */
  readonly #hooks: ContextHooks = {
    progress: (h, info) => this.#progress(h, info),
    logger: (h) =>
      childLogger(this.#logger, { taskId: h.envelope.id, attempt: h.delivery.deliveryCount }),
  };
  readonly #counters = { done: 0, failed: 0, retried: 0, deadLettered: 0, startedAt: Date.now() };
  readonly #observer: TaskObserver | undefined;

  /** Use {@link startWorker}. */
  constructor(options: WorkerOptions & { hostInfo: WorkerInfo }) {
    this.queue = options.queue;
    this.info = options.hostInfo;
    this.#broker = options.broker;
    this.#handler = options.handler;
    this.#observer = options.observer;
    this.#gpus = [...(options.gpus ?? [])];
    this.#gpuLoad = this.#gpus.map(() => 0);
    this.#concurrency = positiveInt(
      'concurrency',
      options.concurrency ?? (this.#gpus.length > 0 ? this.#gpus.length : 1),
    );
    if (this.#gpus.length > 0 && this.#concurrency % this.#gpus.length !== 0) {
      throw new InputError(
        `worker option concurrency (${this.#concurrency}) must be a multiple of the number of GPUs (${this.#gpus.length})`,
      );
    }
    this.#maxAttempts = positiveInt('maxAttempts', options.maxAttempts ?? 3);
    this.#timeoutMs = options.timeoutMs;
    this.#backoff = options.backoff ?? {};
    this.#heartbeat = options.heartbeat ?? true;
    this.#abortGraceMs = options.abortGraceMs ?? DEFAULT_ABORT_GRACE_MS;
    this.#resultQueue = options.resultQueue ?? resultQueueOf(options.queue);
    this.#progressTopic = options.progressTopic;
    this.#debug = (options.logger ?? silentLogger).isLevelEnabled?.('debug') ?? true;
    this.#logger = childLogger(options.logger ?? silentLogger, {
      queue: options.queue,
      worker: this.info.id,
    });
  }

  /** Declares the queues and starts consuming. Called once by {@link startWorker}. */
  async start(options: { prefetch?: number; queueOptions?: QueueOptions }): Promise<void> {
    if (this.#started)
      throw new BrokerError(
        ErrorCode.BrokerState,
        `worker on queue "${this.queue}" is already started`,
      );
    this.#started = true;
    const prefetch = positiveInt('prefetch', options.prefetch ?? this.#concurrency * 2);
    await this.#broker.declareQueue(this.queue, options.queueOptions);
    await this.#broker.declareQueue(this.#resultQueue);
    this.#counters.startedAt = Date.now();
    this.#consumer = await this.#broker.consume(this.queue, (d) => this.#onDelivery(d), {
      prefetch,
      tag: this.info.id,
    });
  }

  on<E extends keyof WorkerEvents>(event: E, listener: WorkerEvents[E]): this {
    this.#events.on(event, listener);
    return this;
  }

  once<E extends keyof WorkerEvents>(event: E, listener: WorkerEvents[E]): this {
    this.#events.once(event, listener);
    return this;
  }

  off<E extends keyof WorkerEvents>(event: E, listener: WorkerEvents[E]): this {
    this.#events.off(event, listener);
    return this;
  }

  /** Counters since start. */
  stats(): WorkerStats {
    let inFlight = 0;
    for (const h of this.#held) if (h.state === 'running' || h.state === 'settling') inFlight++;
    return {
      queue: this.queue,
      startedAt: this.#counters.startedAt,
      done: this.#counters.done,
      failed: this.#counters.failed,
      retried: this.#counters.retried,
      deadLettered: this.#counters.deadLettered,
      inFlight,
      waiting: this.#waiting.length,
      stopping: this.#stopping !== undefined,
    };
  }

  /**
   * Stops taking work, releases deliveries not started, gives running tasks `graceMs` to finish,
   * then aborts and nacks the rest. Resolves when nothing is held. Idempotent.
   */
  stop(options: StopOptions = {}): Promise<void> {
    this.#stopping ??= this.#stop(options.graceMs ?? DEFAULT_GRACE_MS);
    return this.#stopping;
  }

  async #stop(graceMs: number): Promise<void> {
    this.#logger.info({ graceMs }, 'worker stopping');
    try {
      await this.#consumer?.cancel();
    } catch (err) {
      this.#emitError(toError(err), 'cancelling the consumer failed');
    }
    for (const h of this.#waiting.splice(0)) {
      h.state = 'settled';
      this.#track(h, h.delivery.release(), 'release');
    }
    const running = [...this.#runs.values()];
    if (running.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.min(graceMs, MAX_TIMER_MS));
      });
      await Promise.race([Promise.allSettled(running), grace]);
      clearTimeout(timer);
    }
    const waitFor: Promise<unknown>[] = [];
    for (const [h, run] of this.#runs) {
      if (h.state !== 'running') {
        waitFor.push(run);
        continue;
      }
      h.state = 'abandoned';
      const error = new TaskError(
        ErrorCode.HandlerFailed,
        `task ${h.envelope.id} on queue "${this.queue}": worker stopped before the task finished (grace ${graceMs} ms)`,
      );
      abortTask(h, error);
      this.#counters.failed++;
      this.#observer?.taskFinished('retried', undefined);
      this.#emit('task:failed', {
        ...this.#taskEvent(h),
        error,
        code: error.code,
        willRetry: true,
        delayMs: 0,
      });
      this.#track(h, h.delivery.nack({ error: deadReason(error) }), 'nack');
    }
    await Promise.allSettled(waitFor);
    while (this.#ops.size > 0) await Promise.allSettled([...this.#ops]);
    this.#logger.info(this.stats(), 'worker stopped');
    this.#emit('stopped');
  }

  /** Broker callback: returns at once; the task runs in the background under the concurrency limit. */
  #onDelivery(delivery: Delivery): void {
    if (this.#stopping) {
      this.#trackOp(delivery.release(), `release of message ${delivery.id}`);
      return;
    }
    let envelope: Envelope;
    try {
      envelope = decode(delivery.body, {
        source: `queue "${this.queue}"`,
        messageId: delivery.id,
        attempt: delivery.deliveryCount,
      });
      if (envelope.type !== MessageType.Task) {
        throw new DecodeError(
          ErrorCode.InvalidEnvelope,
          `queue "${this.queue}": message ${envelope.id} has type "${envelope.type}", expected "task"`,
        );
      }
    } catch (err) {
      const error = toError(err);
      const reason = deadReason(error);
      this.#logger.warn(
        { messageId: delivery.id, reason },
        'dead-lettering a message that cannot be decoded',
      );
      this.#trackOp(
        delivery.deadLetter(reason).then(() => {
          this.#counters.deadLettered++;
          this.#observer?.taskFinished('dead_lettered', undefined);
          this.#emit('task:dead', {
            queue: this.queue,
            taskId: delivery.id,
            attempt: delivery.deliveryCount,
            reason,
          });
        }),
        `dead-letter of message ${delivery.id}`,
      );
      return;
    }
    const held: Held = { delivery, envelope, state: 'waiting' };
    this.#held.add(held);
    this.#startHeartbeat(held);
    this.#waiting.push(held);
    this.#pump();
  }

  /** Starts waiting tasks while there is room under the concurrency limit. */
  #pump(): void {
    while (!this.#stopping && this.#executing < this.#concurrency && this.#waiting.length > 0) {
      const held = this.#waiting.shift()!;
      this.#executing++;
      held.slot = true;
      if (this.#gpus.length > 0) held.gpu = this.#takeGpu();
      this.#runs.set(held, this.#run(held));
    }
  }

  /** The task's handler is done, or will not run: its concurrency slot goes to the next task. */
  #endExecution(h: Held): void {
    if (!h.slot) return;
    h.slot = false;
    if (h.gpu) this.#gpuLoad[h.gpu.slot]!--;
    this.#executing--;
    this.#pump();
  }

  /** The least busy GPU (ties: the first listed); below the concurrency limit one always has room. */
  #takeGpu(): { slot: number; info: TaskGpu } {
    let slot = 0;
    for (let i = 1; i < this.#gpuLoad.length; i++) {
      if (this.#gpuLoad[i]! < this.#gpuLoad[slot]!) slot = i;
    }
    this.#gpuLoad[slot]!++;
    return { slot, info: this.#gpus[slot]! };
  }

  /** Runs a held task to its end; never rejects. */
  async #run(h: Held): Promise<void> {
    try {
      await this.#attempt(h);
    } catch (err) {
      this.#emitError(toError(err), `task ${h.envelope.id} failed to settle`);
    } finally {
      this.#runs.delete(h);
      this.#release(h);
      this.#endExecution(h);
    }
  }

  async #attempt(h: Held): Promise<void> {
    const env = h.envelope;
    if (env.deadline !== undefined && Date.now() > env.deadline) {
      const now = Date.now();
      h.state = 'settling';
      const error = new TaskError(
        ErrorCode.DeadlineExceeded,
        `task ${env.id} on queue "${this.queue}": deadline ${new Date(env.deadline).toISOString()} passed ${now - env.deadline} ms before it could start`,
        { retry: false },
      );
      this.#endExecution(h);
      await this.#failed(h, error, { startedAt: now, finishedAt: now });
      return;
    }

    h.state = 'running';
    const startedAt = Date.now();
    this.#observer?.taskStarted(env.createdAt);
    if (this.#listening('task:started')) this.#emit('task:started', this.#taskEvent(h));
    const ctx = new RunContext(h, this.#hooks);
    if (this.#debug) ctx.log.debug({ key: env.key }, 'task started');
    let timer: NodeJS.Timeout | undefined;
    if (this.#timeoutMs !== undefined) {
      const limit = this.#timeoutMs;
      timer = setTimeout(
        () => {
          abortTask(
            h,
            new TaskError(
              ErrorCode.Timeout,
              `task ${env.id} on queue "${this.queue}" ran past its time limit of ${limit} ms`,
            ),
          );
        },
        Math.min(limit, MAX_TIMER_MS),
      );
    }
    const outcome = await this.#execute(env.payload, ctx, h);
    clearTimeout(timer);
    this.#endExecution(h);
    // stop() gave up on this task and nacked it already.
    if (h.state !== 'running') return;
    h.state = 'settling';
    const timing = { startedAt, finishedAt: Date.now() };
    if (outcome.ok) await this.#succeeded(h, outcome.value, timing);
    else await this.#failed(h, outcome.error, timing);
  }

  /**
   * Runs the handler. If the task's signal aborts first, waits up to abortGraceMs for the
   * handler to settle (an exec child being killed) and fails with the abort reason.
   */
  async #execute(payload: unknown, ctx: TaskContext, h: Held): Promise<Outcome> {
    let returned: unknown;
    try {
      returned = this.#handler(payload, ctx);
    } catch (err) {
      return { ok: false, error: toError(err) };
    }
    if (!isThenable(returned) && h.abortReason === undefined) return { ok: true, value: returned };
    const run = Promise.resolve(returned);
    // One promise settled by the handler or by an abort, whichever comes first.
    const first = await new Promise<Outcome | 'aborted'>((resolve) => {
      run.then(
        (value) => resolve({ ok: true, value }),
        (err: unknown) => resolve({ ok: false, error: toError(err) }),
      );
      if (h.abortReason !== undefined) resolve('aborted');
      else h.wakeAbort = () => resolve('aborted');
    });
    h.wakeAbort = undefined;
    if (first !== 'aborted') return first;
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.#abortGraceMs);
    });
    await Promise.race([run.then(noop, noop), grace]);
    clearTimeout(timer);
    return { ok: false, error: h.abortReason! };
  }

  async #succeeded(h: Held, value: unknown, timing: Timing): Promise<void> {
    const result = this.#result(h, timing, true);
    if (value !== undefined) result.value = value;
    let message: OutgoingMessage;
    try {
      message = resultMessage(result, h.envelope.headers);
    } catch (err) {
      const error = new TaskError(
        ErrorCode.HandlerFailed,
        `task ${h.envelope.id} on queue "${this.queue}": result is not JSON-serializable: ${toError(err).message}`,
        { cause: err, retry: false },
      );
      await this.#failed(h, error, timing);
      return;
    }
    try {
      // The result is durable before the task is acked (atomically on embedded and memory).
      await h.delivery.ackWithPublish(this.#replyTo(h), [message]);
    } catch (err) {
      await this.#resultNotPublished(h, toError(err));
      return;
    }
    this.#counters.done++;
    this.#observer?.taskFinished('completed', timing.finishedAt - timing.startedAt);
    if (this.#listening('task:completed'))
      this.#emit('task:completed', { ...this.#taskEvent(h), result });
  }

  async #failed(h: Held, error: Error, timing: Timing): Promise<void> {
    const code = errorCode(error);
    const attempt = h.delivery.deliveryCount;
    const retryable = !(error instanceof TaskError && !error.retry);
    const reason = deadReason(error);
    this.#counters.failed++;
    if (retryable && attempt < this.#maxAttempts) {
      const delayMs = backoffDelay(attempt, this.#backoff);
      await h.delivery.nack({ delayMs, error: reason });
      this.#counters.retried++;
      this.#observer?.taskFinished('retried', timing.finishedAt - timing.startedAt);
      this.#logger.info(
        { taskId: h.envelope.id, attempt, delayMs, reason },
        'task failed, will retry',
      );
      this.#emit('task:failed', {
        ...this.#taskEvent(h),
        error,
        code,
        willRetry: true,
        delayMs,
        durationMs: timing.finishedAt - timing.startedAt,
      });
      return;
    }
    const result = this.#result(h, timing, false);
    result.error = { code, message: error.message };
    try {
      await this.#broker.publish(this.#replyTo(h), [resultMessage(result, h.envelope.headers)]);
    } catch (err) {
      await this.#resultNotPublished(h, toError(err));
      return;
    }
    await h.delivery.deadLetter(reason);
    this.#counters.deadLettered++;
    this.#observer?.taskFinished('dead_lettered', timing.finishedAt - timing.startedAt);
    this.#logger.warn({ taskId: h.envelope.id, attempt, reason }, 'task dead-lettered');
    this.#emit('task:failed', {
      ...this.#taskEvent(h),
      error,
      code,
      willRetry: false,
      durationMs: timing.finishedAt - timing.startedAt,
    });
    this.#emit('task:dead', { ...this.#taskEvent(h), reason });
  }

  /** The result could not be published: the task goes back to the queue rather than being lost. */
  async #resultNotPublished(h: Held, error: Error): Promise<void> {
    const target = this.#replyTo(h);
    this.#emitError(
      error,
      `publishing the result of task ${h.envelope.id} to queue "${target}" failed`,
    );
    const delayMs = backoffDelay(h.delivery.deliveryCount, this.#backoff);
    await h.delivery.nack({
      delayMs,
      error: `${ErrorCode.BrokerUnavailable}: result not published to queue "${target}": ${error.message}`,
    });
  }

  #result(h: Held, timing: Timing, ok: boolean): TaskResult {
    const env = h.envelope;
    const result: TaskResult = {
      taskId: env.id,
      ok,
      worker: h.gpu ? { ...this.info, gpu: h.gpu.info } : this.info,
      startedAt: timing.startedAt,
      finishedAt: timing.finishedAt,
      durationMs: timing.finishedAt - timing.startedAt,
      attempt: h.delivery.deliveryCount,
    };
    if (env.key !== undefined) result.key = env.key;
    if (env.task !== undefined) result.task = env.task;
    return result;
  }

  #replyTo(h: Held): string {
    return replyAddressOf(h.delivery, h.envelope.replyTo) ?? this.#resultQueue;
  }

  #progress(h: Held, info: unknown): void {
    if (h.state !== 'running') return;
    this.#emit('task:progress', { ...this.#taskEvent(h), info });
    if (this.#progressTopic !== undefined) {
      const topic = this.#progressTopic;
      const event = { ...this.#taskEvent(h), info };
      this.#trackOp(
        publishEvent(this.#broker, topic, event).then(() => {}),
        `progress event on topic "${topic}"`,
      );
    }
  }

  /**
   * Extends the lease of a held delivery every third of its length until it is settled. A
   * delivery whose lease has no finite end (a transport without leases) gets no heartbeat.
   * One timer serves every held delivery, ticking at half the shortest period, so each lease
   * is extended before half of it has passed.
   */
  #startHeartbeat(h: Held): void {
    if (!this.#heartbeat) return;
    const now = Date.now();
    const remaining = h.delivery.leaseExpiresAt - now;
    if (!Number.isFinite(remaining) || remaining <= 0) return;
    const every = Math.min(Math.max(Math.floor(remaining / 3), 10), MAX_TIMER_MS);
    h.beatEvery = every;
    h.nextBeatAt = now + every;
    this.#beating.add(h);
    this.#beatTicker.atLeastEvery(Math.max(Math.floor(every / 2), 5));
  }

  /** Extends the leases that are due; the timer stops at the first tick that finds none held. */
  #beat(): void {
    if (this.#beating.size === 0) {
      this.#beatTicker.stop();
      return;
    }
    const now = Date.now();
    for (const h of this.#beating) {
      if (now < h.nextBeatAt!) continue;
      h.nextBeatAt = now + h.beatEvery!;
      h.delivery.extendLease().catch((err: unknown) => {
        this.#logger.warn(
          { taskId: h.envelope.id, err: toError(err).message },
          'lease extension failed; the task may be delivered again elsewhere',
        );
      });
    }
  }

  #release(h: Held): void {
    this.#beating.delete(h);
    if (h.state !== 'abandoned') h.state = 'settled';
    this.#held.delete(h);
  }

  /** Tracks a settle that stop() must wait for, then forgets the delivery. */
  #track(h: Held, op: Promise<void>, what: string): void {
    this.#trackOp(
      op.finally(() => this.#release(h)),
      `${what} of task ${h.envelope.id}`,
    );
  }

  #trackOp(op: Promise<void>, what: string): void {
    const tracked = op.catch((err: unknown) => this.#emitError(toError(err), `${what} failed`));
    this.#ops.add(tracked);
    void tracked.finally(() => this.#ops.delete(tracked));
  }

  #taskEvent(h: Held): TaskEvent {
    const event: TaskEvent = {
      queue: this.queue,
      taskId: h.envelope.id,
      attempt: h.delivery.deliveryCount,
    };
    if (h.envelope.key !== undefined) event.key = h.envelope.key;
    if (h.envelope.task !== undefined) event.task = h.envelope.task;
    if (h.envelope.createdAt !== undefined) event.createdAt = h.envelope.createdAt;
    return event;
  }

  /** Whether anyone listens for `event` (event objects are built only then). */
  #listening(event: keyof WorkerEvents): boolean {
    return this.#events.listenerCount(event) > 0;
  }

  #emit<E extends keyof WorkerEvents>(event: E, ...args: Parameters<WorkerEvents[E]>): void {
    try {
      this.#events.emit(event, ...args);
    } catch (err) {
      // A listener's bug must not change a task's fate.
      this.#logger.error({ event, err: toError(err).message }, 'worker event listener threw');
    }
  }

  #emitError(error: Error, context: string): void {
    const wrapped = new Error(`worker on queue "${this.queue}": ${context}: ${error.message}`, {
      cause: error,
    });
    this.#logger.error({ err: error.message }, context);
    if (this.#events.listenerCount('error') > 0) this.#emit('error', wrapped);
  }
}

interface ContextHooks {
  progress(h: Held, info: unknown): void;
  logger(h: Held): Logger;
}

/**
 * The context a handler gets: a class, so that every task's context shares one shape (an object
 * literal with getters gets a shape of its own each time). Every member is an own enumerable
 * property, so a handler may spread or destructure it. `signal` and `log` are getters made on
 * first read: an AbortController and a child logger cost more than a no-op task.
 */
class RunContext implements TaskContext {
  static readonly #lazy: PropertyDescriptorMap = {
    signal: {
      enumerable: true,
      get(this: RunContext): AbortSignal {
        return (this.#h.controller ??= new AbortController()).signal;
      },
    },
    log: {
      enumerable: true,
      get(this: RunContext): Logger {
        return (this.#log ??= this.#hooks.logger(this.#h));
      },
    },
  };

  readonly taskId: string;
  readonly attempt: number;
  readonly headers: Headers;
  declare readonly key?: string;
  declare readonly task?: string;
  declare readonly signal: AbortSignal;
  declare readonly log: Logger;
  declare readonly gpu?: TaskGpu;
  readonly progress: (info: unknown) => void;
  readonly heartbeat: (ms?: number) => Promise<void>;
  readonly #h: Held;
  readonly #hooks: ContextHooks;
  #log: Logger | undefined;

  constructor(h: Held, hooks: ContextHooks) {
    const env = h.envelope;
    this.taskId = env.id;
    this.attempt = h.delivery.deliveryCount;
    this.headers = env.headers ?? {};
    if (env.key !== undefined) (this as { key?: string }).key = env.key;
    if (env.task !== undefined) (this as { task?: string }).task = env.task;
    if (h.gpu) (this as { gpu?: TaskGpu }).gpu = h.gpu.info;
    this.progress = (info) => hooks.progress(h, info);
    this.heartbeat = (ms) => h.delivery.extendLease(ms);
    this.#h = h;
    this.#hooks = hooks;
    Object.defineProperties(this, RunContext.#lazy);
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

function noop(): void {}

/** Aborts a running task: its signal (if a handler asked for it) and the wait in #execute. */
function abortTask(h: Held, reason: Error): void {
  if (h.abortReason !== undefined) return;
  h.abortReason = reason;
  (h.controller ??= new AbortController()).abort(reason);
  h.wakeAbort?.();
}

function positiveInt(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new InputError(`worker option ${name} must be an integer >= 1, got ${String(value)}`);
  }
  return value;
}

/** Starts a worker on `options.queue`; resolves once it is consuming. */
export async function startWorker(options: WorkerOptions): Promise<Worker> {
  const hostInfo = options.hostInfo ?? (await getHostInfo());
  const worker = new Worker({ ...options, hostInfo });
  const startOptions: { prefetch?: number; queueOptions?: QueueOptions } = {};
  if (options.prefetch !== undefined) startOptions.prefetch = options.prefetch;
  if (options.queueOptions !== undefined) startOptions.queueOptions = options.queueOptions;
  await worker.start(startOptions);
  return worker;
}

export interface SignalHandlerOptions {
  /** Grace period given to running tasks on the first signal, in ms (default: 30000). */
  graceMs?: number;
  /** Signals to handle (default: SIGTERM and SIGINT). */
  signals?: readonly NodeJS.Signals[];
  /** Called when the first signal arrives, before stopping. */
  onSignal?: (signal: NodeJS.Signals) => void;
  /** Called once the worker stopped: 0 when clean, 1 when stop() failed (default: process.exit). */
  onExit?: (code: number) => void;
  /** Called on a second signal with 130 (default: process.exit). */
  forceExit?: (code: number) => void;
}

/**
 * First SIGTERM/SIGINT: stop the worker gracefully, then `onExit(0)`. A second signal exits at
 * once with 130 (leases bring the unfinished tasks back). Returns a function that removes the
 * handlers.
 */
export function installSignalHandlers(
  worker: Worker,
  options: SignalHandlerOptions = {},
): () => void {
  const signals = options.signals ?? (['SIGTERM', 'SIGINT'] as const);
  const onExit = options.onExit ?? ((code: number) => process.exit(code));
  const forceExit = options.forceExit ?? ((code: number) => process.exit(code));
  let received = false;
  const listener = (signal: NodeJS.Signals): void => {
    if (received) {
      forceExit(130);
      return;
    }
    received = true;
    options.onSignal?.(signal);
    worker.stop({ graceMs: options.graceMs ?? DEFAULT_GRACE_MS }).then(
      () => onExit(0),
      () => onExit(1),
    );
  };
  for (const s of signals) process.on(s, listener);
  return () => {
    for (const s of signals) process.off(s, listener);
  };
}
