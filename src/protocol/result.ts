import type { ErrorCode } from './errors.js';

/** A GPU seen by `nvidia-smi` on the worker's machine. */
export interface GpuInfo {
  name: string;
  memoryMiB: number;
}

/** The one GPU a task ran on, for a worker started with GPU slots (`qtune worker --gpus`). */
export interface TaskGpu {
  /** The GPU's index as `nvidia-smi` numbers it (PCI bus order). */
  index: number;
  /** Its model, e.g. `NVIDIA H100 80GB HBM3`, when `nvidia-smi` named it. */
  name?: string;
  /** Its UUID (`GPU-...`), when `nvidia-smi` gave one. */
  uuid?: string;
}

/** Who did the work. */
export interface WorkerInfo {
  host: string;
  pid: number;
  /** Worker id, unique per process. */
  id: string;
  gpus?: GpuInfo[];
  /** In a result: the GPU slot the task ran on (only for workers with GPU slots). */
  gpu?: TaskGpu;
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
