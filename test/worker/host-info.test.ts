import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseGpuList, parseNvidiaSmi } from '../../src/worker/host-info.js';

describe('parseNvidiaSmi', () => {
  it('reads one GPU per line and skips lines it cannot read', () => {
    const text = 'NVIDIA A100-SXM4-40GB, 40960\nNVIDIA GeForce RTX 4090, 24564\n\n[N/A], n/a\n';
    expect(parseNvidiaSmi(text)).toEqual([
      { name: 'NVIDIA A100-SXM4-40GB', memoryMiB: 40960 },
      { name: 'NVIDIA GeForce RTX 4090', memoryMiB: 24564 },
    ]);
  });
});

describe('parseGpuList', () => {
  it('reads index, name and uuid per line, keeping commas in names and skipping other lines', () => {
    const text = [
      '0, NVIDIA H100 80GB HBM3, GPU-1c7f0a52-0000-4000-8000-000000000000',
      '1, Odd, Name, GPU-2d8e1b63-1111-4000-8000-000000000001',
      '2, [N/A], [N/A]',
      'No devices were found',
      '',
    ].join('\n');
    expect(parseGpuList(text)).toEqual([
      { index: 0, name: 'NVIDIA H100 80GB HBM3', uuid: 'GPU-1c7f0a52-0000-4000-8000-000000000000' },
      { index: 1, name: 'Odd, Name', uuid: 'GPU-2d8e1b63-1111-4000-8000-000000000001' },
      { index: 2 },
    ]);
  });
});

describe('getHostInfo', () => {
  let dir: string;
  let savedPath: string | undefined;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'qtune-host-'));
    savedPath = process.env.PATH;
    vi.resetModules();
  });
  afterEach(() => {
    process.env.PATH = savedPath;
    rmSync(dir, { recursive: true, force: true });
  });

  async function freshModule() {
    return import('../../src/worker/host-info.js');
  }

  it('lists the GPUs that nvidia-smi reports, probing only once', async () => {
    const calls = join(dir, 'calls');
    const fake = join(dir, 'nvidia-smi');
    writeFileSync(
      fake,
      `#!/bin/sh\necho x >> "${calls}"\nprintf 'NVIDIA H100 80GB HBM3, 81559\\n'\n`,
    );
    chmodSync(fake, 0o755);
    process.env.PATH = `${dir}${delimiter}${savedPath ?? ''}`;
    const { getHostInfo } = await freshModule();
    const info = await getHostInfo({ workerId: 'w-1' });
    expect(info).toEqual({
      host: hostname(),
      pid: process.pid,
      id: 'w-1',
      gpus: [{ name: 'NVIDIA H100 80GB HBM3', memoryMiB: 81559 }],
    });
    await getHostInfo();
    expect(readFileSync(calls, 'utf8').trim().split('\n')).toHaveLength(1);
  });

  it('omits gpus when nvidia-smi is missing, and never throws', async () => {
    process.env.PATH = dir;
    const { getHostInfo } = await freshModule();
    const info = await getHostInfo();
    expect(info.gpus).toBeUndefined();
    expect(info.id).toMatch(
      new RegExp(
        `^${hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${process.pid}:[0-9a-f]{4}$`,
      ),
    );
  });

  it('omits gpus when nvidia-smi fails', async () => {
    const fake = join(dir, 'nvidia-smi');
    writeFileSync(fake, '#!/bin/sh\necho "NVIDIA-SMI has failed" >&2\nexit 9\n');
    chmodSync(fake, 0o755);
    process.env.PATH = `${dir}${delimiter}${savedPath ?? ''}`;
    const { getHostInfo } = await freshModule();
    expect((await getHostInfo()).gpus).toBeUndefined();
  });
});
