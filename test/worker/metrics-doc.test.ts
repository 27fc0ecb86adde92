import { afterEach, describe, expect, it } from 'vitest';
import type { MemoryBroker } from '../../src/broker/memory/index.js';
import { getHostInfo } from '../../src/worker/host-info.js';
import { WorkerMetrics } from '../../src/worker/metrics.js';
import { startWorker, type Worker } from '../../src/worker/runtime.js';
import { memoryBroker } from './helpers.js';
import { documentedMetrics } from '../support/prometheus.js';

let broker: MemoryBroker | undefined;
let worker: Worker | undefined;
afterEach(async () => {
  await worker?.stop();
  await broker?.close();
});

describe('docs/metrics.md', () => {
  it('lists every worker metric with its type, and nothing the worker does not export', async () => {
    broker = memoryBroker();
    await broker.declareQueue('q');
    const metrics = new WorkerMetrics({
      queue: 'q',
      host: await getHostInfo(),
      gpus: [{ index: 0, name: 'GPU', uuid: 'GPU-1' }],
      endpoints: () => [],
      processMetrics: false,
    });
    worker = await startWorker({ broker, queue: 'q', handler: async () => 1, observer: metrics });
    metrics.attach(worker);
    const registry = metrics.registry;
    const exported = new Map(
      (await registry.getMetricsAsJSON()).map((m) => [m.name, String(m.type)]),
    );
    const rows = documentedMetrics('Worker (`qtune worker --metrics-port N`)');
    expect(rows.size).toBeGreaterThan(0);
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(exported));
  });
});
