import type { Headers } from '../../protocol/envelope.js';
import type { TaskGpu } from '../../protocol/result.js';
import type { Logger } from '../logger.js';

/** What a handler knows about the task it runs, and how it talks back to the runtime. */
export interface TaskContext {
  /** The task envelope's id (stable across redeliveries). */
  readonly taskId: string;
  /** Idempotency key of the task, when it has one. */
  readonly key?: string;
  /** Task name from the envelope, when it has one. */
  readonly task?: string;
  /** 1 on the first delivery, incremented on each redelivery. */
  readonly attempt: number;
  /** Headers of the task envelope (empty when none). */
  readonly headers: Headers;
  /** Fires when the task times out or the worker shuts down; stop work and settle promptly. */
  readonly signal: AbortSignal;
  /** Reports intermediate progress (for example a metric after an epoch). */
  progress(info: unknown): void;
  /** Extends the task's lease to `ms` from now (default: the queue's lease time). */
  heartbeat(ms?: number): Promise<void>;
  /** Logger bound to this task. */
  readonly log: Logger;
  /**
   * The GPU this task holds, on a worker with GPU slots (`--gpus`); no other task of the worker
   * runs on it meanwhile (with one slot per GPU). Absent otherwise.
   */
  readonly gpu?: TaskGpu;
}

/** Runs one task: resolves with a JSON-serializable result or rejects to fail the attempt. */
export type TaskHandler<P = unknown, R = unknown> = (payload: P, ctx: TaskContext) => Promise<R>;
