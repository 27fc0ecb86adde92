import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { GpuInfo, WorkerInfo } from '../protocol/result.js';

/** Arguments given to `nvidia-smi` to list GPUs as `name, memory MiB` lines. */
export const NVIDIA_SMI_ARGS = [
  '--query-gpu=name,memory.total',
  '--format=csv,noheader,nounits',
] as const;

/** How long the `nvidia-smi` probe may run before it counts as "no GPU" (ms). */
const PROBE_TIMEOUT_MS = 5_000;

let gpuProbe: Promise<GpuInfo[] | undefined> | undefined;

/**
 * Parses `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` output.
 * Lines that do not read as `name, number` are skipped.
 */
export function parseNvidiaSmi(text: string): GpuInfo[] {
  const gpus: GpuInfo[] = [];
  for (const line of text.split(/\r?\n/)) {
    const comma = line.lastIndexOf(',');
    if (comma <= 0) continue;
    const name = line.slice(0, comma).trim();
    const memoryMiB = Number(line.slice(comma + 1).trim());
    if (name === '' || !Number.isFinite(memoryMiB)) continue;
    gpus.push({ name, memoryMiB });
  }
  return gpus;
}

/**
 * Lists the machine's NVIDIA GPUs through `nvidia-smi`, or `undefined` where it is missing or
 * fails. Probes once per process; later calls share the first answer. Never rejects.
 */
export function probeGpus(): Promise<GpuInfo[] | undefined> {
  gpuProbe ??= new Promise((resolve) => {
    try {
      execFile(
        'nvidia-smi',
        [...NVIDIA_SMI_ARGS],
        { timeout: PROBE_TIMEOUT_MS, windowsHide: true },
        (err, stdout) => {
          if (err) return resolve(undefined);
          const gpus = parseNvidiaSmi(String(stdout));
          resolve(gpus.length > 0 ? gpus : undefined);
        },
      );
    } catch {
      resolve(undefined);
    }
  });
  return gpuProbe;
}

/** A worker id of the form `host:pid:xxxx`, unique per call. */
export function newWorkerId(host = hostname(), pid = process.pid): string {
  return `${host}:${pid}:${randomBytes(2).toString('hex')}`;
}

export interface HostInfoOptions {
  /** Worker id (default: `host:pid:xxxx` with a random suffix). */
  workerId?: string;
  /** Probe `nvidia-smi` for GPUs (default: true). */
  gpus?: boolean;
  /** What this machine costs per hour, recorded on every result (default: none). */
  pricePerHour?: number;
}

/**
 * Who this worker is: host name, pid, worker id, GPUs where present and the price per hour when
 * given. Never rejects.
 */
export async function getHostInfo(options: HostInfoOptions = {}): Promise<WorkerInfo> {
  const host = hostname();
  const info: WorkerInfo = {
    host,
    pid: process.pid,
    id: options.workerId ?? newWorkerId(host),
  };
  if (options.gpus !== false) {
    const gpus = await probeGpus();
    if (gpus) info.gpus = gpus;
  }
  if (options.pricePerHour !== undefined) info.pricePerHour = options.pricePerHour;
  return info;
}
