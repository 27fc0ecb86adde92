import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TaskGpu } from '../../src/protocol/result.js';
import {
  assertBuilt,
  killAll,
  publishPayloads,
  readResults,
  runCli,
  startCli,
  tempBroker,
} from './helpers.js';
import { parseSamples } from '../support/prometheus.js';
import { waitFor } from '../support/wait.js';

const GPUS = [
  { index: 0, name: 'NVIDIA H100 80GB HBM3', uuid: 'GPU-0a1b2c3d-0000-4000-8000-000000000000' },
  { index: 1, name: 'NVIDIA H100 80GB HBM3', uuid: 'GPU-0a1b2c3d-1111-4000-8000-000000000001' },
  { index: 2, name: 'NVIDIA A100-SXM4-40GB', uuid: 'GPU-0a1b2c3d-2222-4000-8000-000000000002' },
];

/**
 * A directory holding a fake `nvidia-smi` that answers both queries qtune makes (the GPU list
 * and the host's name/memory list) for the three GPUs above, or fails as on a machine whose
 * driver is not loaded.
 */
function fakeNvidiaSmi(dir: string, mode: 'three-gpus' | 'no-driver'): string {
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  const script =
    mode === 'no-driver'
      ? `#!/bin/sh
echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
exit 9
`
      : `#!/bin/sh
case "$1" in
  --query-gpu=index,name,uuid)
${GPUS.map((g) => `    echo "${g.index}, ${g.name}, ${g.uuid}"`).join('\n')}
    ;;
  *)
${GPUS.map((g) => `    echo "${g.name}, 81559"`).join('\n')}
    ;;
esac
`;
  const path = join(bin, 'nvidia-smi');
  writeFileSync(path, script);
  chmodSync(path, 0o755);
  return `${bin}${delimiter}${process.env.PATH ?? ''}`;
}

let env: ReturnType<typeof tempBroker> | undefined;
const children: ReturnType<typeof startCli>[] = [];
beforeAll(() => assertBuilt());
afterEach(() => {
  killAll(children);
  children.length = 0;
  env?.cleanup();
  env = undefined;
});

describe('qtune worker --gpus', () => {
  it('runs one task per GPU at a time, with CUDA_VISIBLE_DEVICES set to its GPU, and records the GPU on each result', async () => {
    env = tempBroker();
    const PATH = fakeNvidiaSmi(env.dir, 'three-gpus');
    const locks = join(env.dir, 'locks');
    const log = join(env.dir, 'seen.log');
    mkdirSync(locks);
    // Each task takes its GPU's lock directory (mkdir is atomic): a second task on the same GPU
    // at the same time finds it taken and logs a clash.
    const command =
      `lock="${locks}/gpu-$CUDA_VISIBLE_DEVICES"; ` +
      `if mkdir "$lock" 2>/dev/null; then echo "$CUDA_VISIBLE_DEVICES $CUDA_DEVICE_ORDER" >> "${log}"; ` +
      `else echo "clash $CUDA_VISIBLE_DEVICES" >> "${log}"; fi; ` +
      `sleep 0.3; rmdir "$lock" 2>/dev/null; ` +
      `printf '{"cuda":"%s"}' "$CUDA_VISIBLE_DEVICES"`;
    const worker = startCli(
      [
        'worker',
        'train',
        '--broker',
        env.url,
        '--gpus',
        '0,2',
        '--exec',
        command,
        '--metrics-port',
        '0',
        '--log-format',
        'json',
      ],
      { PATH },
    );
    children.push(worker);
    const items = Array.from({ length: 8 }, (_, i) => ({ id: `t${i}` }));
    await publishPayloads(env.dir, env.url, 'train', items);

    const results: Awaited<ReturnType<typeof readResults<{ cuda: string }>>> = [];
    await waitFor(
      async () => {
        results.push(...(await readResults<{ cuda: string }>('train', env!.url)));
        return results.length >= items.length;
      },
      40_000,
      `${items.length} results (worker stderr: ${worker.stderrText()})`,
    );

    const seen = readFileSync(log, 'utf8').trim().split('\n');
    expect(seen).toHaveLength(items.length);
    expect(seen.filter((l) => l.startsWith('clash'))).toEqual([]);
    expect(new Set(seen)).toEqual(new Set(['0 PCI_BUS_ID', '2 PCI_BUS_ID']));
    for (const r of results) {
      expect(r.ok, JSON.stringify(r.error)).toBe(true);
      const gpu = r.worker.gpu as TaskGpu;
      expect([GPUS[0], GPUS[2]]).toContainEqual(gpu);
      // The result names the GPU the command saw.
      expect(r.value!.cuda).toBe(String(gpu.index));
    }
    expect(new Set(results.map((r) => r.worker.gpu!.index))).toEqual(new Set([0, 2]));

    // Its metrics name the GPU slots it has, and only those.
    const url = /"url":"(http:\/\/[^"]+\/metrics)"/u.exec(worker.stderrText())?.[1];
    expect(url, worker.stderrText()).toBeDefined();
    const gpuInfo = parseSamples(await (await fetch(url!)).text())
      .filter((s) => s.name === 'qtune_worker_gpu_info')
      .map((s) => ({ ...s.labels, value: s.value }));
    expect(gpuInfo).toEqual(
      [GPUS[0]!, GPUS[2]!].map((g) => ({
        index: String(g.index),
        name: g.name,
        uuid: g.uuid,
        value: 1,
      })),
    );
  });

  it('refuses --gpus auto with exit 2 when nvidia-smi finds no GPU, before consuming anything', async () => {
    env = tempBroker();
    const PATH = fakeNvidiaSmi(env.dir, 'no-driver');
    await publishPayloads(env.dir, env.url, 'train', [{ id: 'a' }]);
    const res = await runCli(
      ['worker', 'train', '--broker', env.url, '--gpus', 'auto', '--exec', 'cat'],
      { env: { PATH }, timeoutMs: 20_000 },
    );
    expect(res.code, res.stderr).toBe(2);
    expect(res.stderr).toContain(
      "--gpus auto: cannot list GPUs with nvidia-smi: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
    );
    const status = await runCli(['status', '--json', '--broker', env.url]);
    const queues = (JSON.parse(status.stdout) as { queues: { queue: string; ready: number }[] })
      .queues;
    expect(queues.find((q) => q.queue === 'train')?.ready).toBe(1);
  });

  it('refuses a GPU index the machine lacks, a repeated index, and a concurrency that is not a multiple of the GPUs', async () => {
    env = tempBroker();
    const PATH = fakeNvidiaSmi(env.dir, 'three-gpus');
    const run = (...flags: string[]) =>
      runCli(['worker', 'train', '--broker', env!.url, '--exec', 'cat', ...flags], {
        env: { PATH },
        timeoutMs: 20_000,
      });
    const missing = await run('--gpus', '0,5');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain(
      '--gpus 0,5: GPU 5 is not on this machine (nvidia-smi lists 0, 1, 2)',
    );
    const twice = await run('--gpus', '1,1');
    expect(twice.code).toBe(2);
    expect(twice.stderr).toContain('"1,1" names GPU 1 twice');
    const uneven = await run('--gpus', '0,2', '--concurrency', '3');
    expect(uneven.code).toBe(2);
    expect(uneven.stderr).toContain(
      '--concurrency 3: with --gpus it must be a multiple of the number of GPUs (2: 0,2)',
    );
  });
});
