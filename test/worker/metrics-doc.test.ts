import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { MemoryBroker } from '../../src/broker/memory/index.js';
import { getHostInfo } from '../../src/worker/host-info.js';
import { instrumentWorker } from '../../src/worker/metrics.js';
import { startWorker, type Worker } from '../../src/worker/runtime.js';
import { memoryBroker } from './helpers.js';

const DOC = join(import.meta.dirname, '../../docs/metrics.md');

/** The rows of the table under `## <heading>` in docs/metrics.md: metric name → type. */
function documented(heading: string): Map<string, string> {
  const text = readFileSync(DOC, 'utf8');
  const start = text.indexOf(`\n## ${heading}`);
  expect(start, `docs/metrics.md has a "## ${heading}" section`).toBeGreaterThan(-1);
  const end = text.indexOf('\n## ', start + 1);
  const rows = new Map<string, string>();
  for (const m of text
    .slice(start, end === -1 ? undefined : end)
    .matchAll(/^\|\s*`(\w+)`\s*\|\s*(\w+)\s*\|/gmu)) {
    rows.set(m[1]!, m[2]!);
  }
  return rows;
}

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
    worker = await startWorker({ broker, queue: 'q', handler: async () => 1 });
    const registry = instrumentWorker(worker, {
      host: await getHostInfo(),
      gpus: [{ index: 0, name: 'GPU', uuid: 'GPU-1' }],
      endpoints: () => [],
      processMetrics: false,
    });
    const exported = new Map(
      (await registry.getMetricsAsJSON()).map((m) => [m.name, String(m.type)]),
    );
    const rows = documented('Worker (`qtune worker --metrics-port N`)');
    expect(rows.size).toBeGreaterThan(0);
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(exported));
  });
});
