import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { InputError } from '../protocol/errors.js';
import { printable } from '../protocol/names.js';
import type { GpuInfo, TaskGpu, WorkerInfo } from '../protocol/result.js';

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

/** Arguments given to `nvidia-smi` to list GPUs as `index, name, uuid` lines. */
export const NVIDIA_SMI_LIST_ARGS = [
  '--query-gpu=index,name,uuid',
  '--format=csv,noheader',
] as const;

/**
 * Parses `nvidia-smi --query-gpu=index,name,uuid --format=csv,noheader` output. Lines whose
 * first field is not an index are skipped; a UUID that is not `GPU-...` or `MIG-...` is left out.
 */
export function parseGpuList(text: string): TaskGpu[] {
  const gpus: TaskGpu[] = [];
  for (const line of text.split(/\r?\n/)) {
    const fields = line.split(',').map((f) => f.trim());
    if (fields.length < 2 || !/^\d+$/.test(fields[0]!)) continue;
    const gpu: TaskGpu = { index: Number(fields[0]) };
    const last = fields.length >= 3 ? fields[fields.length - 1]! : '';
    const uuid = /^(GPU|MIG)-/.test(last) ? last : undefined;
    const name = fields.slice(1, uuid !== undefined ? -1 : undefined).join(', ');
    if (name !== '' && !name.startsWith('[')) gpu.name = name;
    if (uuid !== undefined) gpu.uuid = uuid;
    gpus.push(gpu);
  }
  return gpus;
}

/**
 * The GPUs for a worker's GPU slots: `'auto'` for every GPU `nvidia-smi` lists, or the given
 * indices, each checked against that list (in the order given). Throws an InputError naming
 * what is wrong when `nvidia-smi` cannot run, lists no GPU, or lacks an index.
 */
export async function resolveGpuSlots(wanted: 'auto' | readonly number[]): Promise<TaskGpu[]> {
  const what = `--gpus ${wanted === 'auto' ? 'auto' : wanted.join(',')}`;
  const listed = await new Promise<TaskGpu[]>((resolve, reject) => {
    try {
      execFile(
        'nvidia-smi',
        [...NVIDIA_SMI_LIST_ARGS],
        { timeout: PROBE_TIMEOUT_MS, windowsHide: true },
        (err, stdout, stderr) => {
          if (!err) return resolve(parseGpuList(String(stdout)));
          const code = (err as { code?: unknown }).code;
          const said = (String(stderr).trim() || String(stdout).trim()).split('\n')[0];
          const detail = printable(said || (typeof code === 'string' ? code : err.message));
          reject(new InputError(`${what}: cannot list GPUs with nvidia-smi: ${detail}`));
        },
      );
    } catch (err) {
      reject(new InputError(`${what}: cannot run nvidia-smi: ${(err as Error).message}`));
    }
  });
  if (listed.length === 0) throw new InputError(`${what}: nvidia-smi lists no GPU`);
  if (wanted === 'auto') return listed;
  return wanted.map((index) => {
    const gpu = listed.find((g) => g.index === index);
    if (!gpu) {
      throw new InputError(
        `${what}: GPU ${index} is not on this machine (nvidia-smi lists ${listed.map((g) => g.index).join(', ')})`,
      );
    }
    return gpu;
  });
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
