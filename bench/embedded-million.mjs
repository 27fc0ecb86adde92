// Queues N tasks (default 1,000,000) in a fresh embedded broker and reports memory and disk:
// the publisher's RSS while the queue grows, the database size, and a consumer's RSS while it
// drains a slice of the queue. The queue lives on disk, so RSS should stay flat as N grows.
//
//   npm run build && node bench/embedded-million.mjs [--tasks 1000000] [--drain 100000]
import { mkdtempSync, rmSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddedBroker } from '../dist/broker/embedded/index.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const N = arg('tasks', 1_000_000);
const DRAIN = arg('drain', 100_000);
const BATCH = 10_000;
const mib = (b) => (b / 1048576).toFixed(1);
const rss = () => mib(process.memoryUsage().rss);
const fileSize = (p) =>
  ['', '-wal', '-shm'].reduce(
    (s, ext) => s + (existsSync(p + ext) ? statSync(p + ext).size : 0),
    0,
  );

const dir = mkdtempSync(join(tmpdir(), 'qtune-million-'));
const path = join(dir, 'broker.db');
try {
  const broker = await EmbeddedBroker.open({ path });
  await broker.declareQueue('million');
  const body = JSON.stringify({
    qtune: 1,
    id: 'x',
    type: 'task',
    payload: { n: 12345, text: 'a no-op task' },
  });
  const t0 = performance.now();
  for (let i = 0; i < N; i += BATCH) {
    const batch = Array.from({ length: Math.min(BATCH, N - i) }, () => ({ body }));
    await broker.publish('million', batch);
    if ((i / BATCH) % 20 === 0) {
      process.stdout.write(
        `queued ${String(i + batch.length).padStart(8)}  publisher RSS ${rss()} MiB  db ${mib(fileSize(path))} MiB\n`,
      );
    }
  }
  const secs = (performance.now() - t0) / 1000;
  const stats = await broker.stats('million');
  console.log(
    `queued ${N} in ${secs.toFixed(1)} s (${Math.round(N / secs)} msgs/s); ready=${stats.ready}`,
  );
  console.log(`publisher RSS ${rss()} MiB; database ${mib(fileSize(path))} MiB`);

  let acked = 0;
  let peak = 0;
  const t1 = performance.now();
  await new Promise((resolve) => {
    let done = false;
    broker.consume(
      'million',
      async (d) => {
        if (done) return d.release();
        await d.ack();
        acked++;
        if (acked % 10_000 === 0) peak = Math.max(peak, process.memoryUsage().rss);
        if (acked === DRAIN) {
          done = true;
          resolve();
        }
      },
      { prefetch: 1000 },
    );
  });
  const dsecs = (performance.now() - t1) / 1000;
  console.log(
    `drained ${DRAIN} of ${N} in ${dsecs.toFixed(1)} s (${Math.round(DRAIN / dsecs)} msgs/s); peak RSS while draining ${mib(peak)} MiB`,
  );
  await broker.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
