import type { ErrorCode } from './errors.js';

/** A GPU seen by `nvidia-smi` on the worker's machine. */
export interface GpuInfo {
  name: string;
  memoryMiB: number;
}

/** Who did the work. */
export interface WorkerInfo {
  host: string;
  pid: number;
  /** Worker id, unique per process. */
  id: string;
  gpus?: GpuInfo[];
  /** What the worker's machine costs per hour, in the operator's currency, when it was given. */
  pricePerHour?: number;
}

/**
 * The payload of a `result` envelope: the outcome of one task plus who did it and what it cost.
 * Times are Unix epoch milliseconds.
 */
export interface TaskResult<V = unknown> {
  taskId: string;
  key?: string;
  task?: string;
  ok: boolean;
  value?: V;
  error?: { code: ErrorCode; message: string };
  worker: WorkerInfo;
  startedAt: number;
  finishedAt: number;
  durationMs: number;
  attempt: number;
}
