// Raw speed of the embedded broker in one process: publish 100,000 messages in batches of 1,000,
// then consume and ack them with prefetch 1,000. Needs `npx tsc -p tsconfig.build.json` first.
// Usage: node bench/embedded-raw.mjs [count] [bodyBytes]   (default: a small task envelope)
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { EmbeddedBroker } from '../dist/broker/embedded/index.js';

const total = Number(process.argv[2] ?? 100_000);
const batch = 1_000;
const dir = mkdtempSync(join(tmpdir(), 'qtune-embedded-raw-'));
const broker = await EmbeddedBroker.open({ path: join(dir, 'broker.db') });
const queue = 'raw';
const bodyBytes = Number(process.argv[3] ?? 0);
const body =
  bodyBytes > 0
    ? Buffer.alloc(bodyBytes, 0x61)
    : Buffer.from(JSON.stringify({ qtune: 1, id: 'x', type: 'task', payload: { n: 1 } }));

try {
  let t0 = performance.now();
  const pending = [];
  for (let i = 0; i < total; i += batch) {
    const msgs = [];
    for (let j = 0; j < batch && i + j < total; j++) msgs.push({ body });
    pending.push(broker.publish(queue, msgs));
    if (pending.length >= 8) await pending.shift();
  }
  await Promise.all(pending);
  const publishS = (performance.now() - t0) / 1000;
  console.log(
    `publish: ${total} msgs in ${publishS.toFixed(2)} s = ${Math.round(total / publishS)} msgs/s`,
  );

  t0 = performance.now();
  let acked = 0;
  await new Promise((resolve, reject) => {
    broker
      .consume(
        queue,
        async (d) => {
          await d.ack();
          if (++acked === total) resolve();
        },
        { prefetch: 1_000 },
      )
      .catch(reject);
  });
  const consumeS = (performance.now() - t0) / 1000;
  console.log(
    `consume+ack: ${total} msgs in ${consumeS.toFixed(2)} s = ${Math.round(total / consumeS)} msgs/s`,
  );
  const stats = await broker.stats(queue);
  if (stats.ready + stats.inFlight + stats.delayed !== 0)
    throw new Error(`left over: ${JSON.stringify(stats)}`);
} finally {
  await broker.close();
  rmSync(dir, { recursive: true, force: true });
}
