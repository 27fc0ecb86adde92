import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, Option } from 'commander';
import type { Logger } from 'pino';
import { openBroker } from '../../broker/open.js';
import { deadLetterQueueOf, type Broker, type Delivery } from '../../broker/contract.js';
import { envelopeMessage } from '../../broker/envelope-message.js';
import { resultQueueOf } from '../../patterns/work-queue.js';
import { decode } from '../../protocol/codec.js';
import { createEnvelope, MessageType } from '../../protocol/envelope.js';
import type { TaskResult } from '../../protocol/result.js';
import { action, contextOf } from '../context.js';
import { builtinHandler, rssMiB, spawnLocalWorkers, waitForConsumers } from '../local-workers.js';
import { intAtLeast } from '../options.js';
import { summarize } from '../percentiles.js';

interface BenchOptions {
  tasks: number;
  workers: number;
  concurrency: number;
  prefetch: number;
  batch: number;
  rate?: number;
  json?: boolean;
  metrics?: boolean;
}

const now = () => performance.timeOrigin + performance.now();

export function benchCommand(): Command {
  return new Command('bench')
    .description(
      'measure end-to-end throughput and latency of no-op tasks through local worker processes',
    )
    .addOption(new Option('--tasks <n>', 'tasks to run').argParser(intAtLeast(1)).default(20_000))
    .addOption(new Option('--workers <n>', 'worker processes').argParser(intAtLeast(1)).default(2))
    .addOption(
      new Option('--concurrency <n>', 'tasks run at once per worker')
        .argParser(intAtLeast(1))
        .default(50),
    )
    .addOption(
      new Option('--prefetch <n>', 'tasks held per worker').argParser(intAtLeast(1)).default(500),
    )
    .addOption(
      new Option('--batch <n>', 'tasks per publish call').argParser(intAtLeast(1)).default(1000),
    )
    .addOption(
      new Option(
        '--rate <n>',
        'publish one task at a time at this many tasks/s (latency mode)',
      ).argParser(intAtLeast(1)),
    )
    .option(
      '--metrics',
      'workers serve Prometheus metrics (--metrics-port) and the run scrapes each every second, to measure their cost',
    )
    .option('--json', 'print one JSON line')
    .addHelpText(
      'after',
      '\nWithout --broker/QTUNE_BROKER the run uses a fresh embedded broker in a temporary directory.\n' +
        'Throughput counts from the first publish to the last result read back.\n' +
        'Exit codes: 0 ok, 1 results missing, 3 broker unavailable.',
    )
    .action(
      action(async (opts: BenchOptions, cmd: Command) => {
        const ctx = contextOf(cmd);
        let tempDir: string | undefined;
        let url = ctx.globals.broker;
        if (!url) {
          tempDir = mkdtempSync(join(tmpdir(), 'qtune-bench-'));
          url = join(tempDir, 'broker.db');
        }
        const broker = await openBroker(url);
        const queue = `bench.${randomUUID().slice(0, 8)}`;
        await broker.declareQueue(queue);
        await broker.declareQueue(resultQueueOf(queue));
        const metricsPorts = opts.metrics
          ? await Promise.all(Array.from({ length: opts.workers }, () => freePort()))
          : [];
        const workers = spawnLocalWorkers({
          brokerUrl: url,
          queue,
          module: builtinHandler('noop-handler'),
          count: opts.workers,
          concurrency: opts.concurrency,
          prefetch: opts.prefetch,
          ...(opts.metrics && { args: (i) => ['--metrics-port', String(metricsPorts[i])] }),
        });
        let scraper: Scraper | undefined;
        try {
          await waitForConsumers(broker, queue, opts.workers);
          const idleRss = workers.children.map((c) => rssMiB(c.pid!) ?? NaN);
          scraper = opts.metrics
            ? scrapeEverySecond(metricsPorts.map((p) => `http://127.0.0.1:${p}/metrics`))
            : undefined;
          const summary = await runLoad(broker, queue, opts);
          const scrapes = await scraper?.stop();
          const finalRss = workers.children.map((c) => rssMiB(c.pid!) ?? NaN);
          const out = {
            system: 'qtune',
            broker: broker.kind,
            tasks: opts.tasks,
            workers: opts.workers,
            concurrency: opts.concurrency,
            ...(opts.rate ? { rate: opts.rate } : {}),
            ...summary,
            ...(scrapes !== undefined && { scrapes }),
            workerRssMiB: { idle: idleRss.map(round1), final: finalRss.map(round1) },
          };
          if (opts.json) process.stdout.write(JSON.stringify(out) + '\n');
          else {
            process.stdout.write(
              `qtune bench on ${broker.kind}: ${opts.tasks} tasks, ${opts.workers} workers × ${opts.concurrency}\n` +
                `  received        ${summary.received}/${opts.tasks}\n` +
                `  throughput      ${summary.tasksPerSec.toFixed(0)} tasks/s (${summary.seconds.toFixed(3)} s)\n` +
                `  publish→start   p50 ${summary.startLatencyMs.p50} ms  p99 ${summary.startLatencyMs.p99} ms\n` +
                `  publish→result  p50 ${summary.e2eLatencyMs.p50} ms  p99 ${summary.e2eLatencyMs.p99} ms\n` +
                `  worker RSS      idle ${idleRss.map(round1).join(', ')} MiB; after ${finalRss.map(round1).join(', ')} MiB\n`,
            );
          }
          return summary.received === opts.tasks ? 0 : 1;
        } finally {
          await scraper?.stop();
          await workers.stop();
          if (!tempDir) await removeBenchQueues(broker, queue, ctx.logger);
          await broker.close();
          if (tempDir) rmSync(tempDir, { recursive: true, force: true });
        }
      }),
    );
}

/** Deletes the queues a run made on a broker that outlives it (task, results, their dead letters). */
async function removeBenchQueues(broker: Broker, queue: string, logger: Logger): Promise<void> {
  const results = resultQueueOf(queue);
  for (const q of [queue, results, deadLetterQueueOf(queue), deadLetterQueueOf(results)]) {
    try {
      await broker.deleteQueue(q);
    } catch (err) {
      logger.warn({ queue: q, err: (err as Error).message }, 'could not delete a bench queue');
    }
  }
}

/** A free TCP port on 127.0.0.1 (free when asked; a worker binds it right after). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

interface Scraper {
  /** Stops scraping; resolves the number of scrapes answered 200. */
  stop(): Promise<number>;
}

/** Scrapes every URL once a second, as a Prometheus with a 1 s interval would. */
function scrapeEverySecond(urls: readonly string[]): Scraper {
  let ok = 0;
  let inFlight: Promise<unknown> = Promise.resolve();
  const scrape = () => {
    inFlight = Promise.all(
      urls.map((u) =>
        fetch(u).then(
          async (res) => {
            await res.text();
            if (res.ok) ok++;
          },
          () => undefined,
        ),
      ),
    );
  };
  scrape();
  const timer = setInterval(scrape, 1000);
  let stopped: Promise<number> | undefined;
  return {
    stop: () =>
      (stopped ??= (async () => {
        clearInterval(timer);
        await inFlight;
        return ok;
      })()),
  };
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

async function runLoad(broker: Broker, queue: string, opts: BenchOptions) {
  const publishedAt = new Map<string, number>();
  const start: number[] = [];
  const e2e: number[] = [];
  let received = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let last = 0;
  const consumer = await broker.consume(
    resultQueueOf(queue),
    async (d: Delivery) => {
      const t = now();
      const result = decode(d.body).payload as TaskResult<{ t: number }>;
      const sent = publishedAt.get(result.taskId);
      if (sent !== undefined) {
        publishedAt.delete(result.taskId);
        e2e.push(t - sent);
        if (result.value) start.push(result.value.t - sent);
        received++;
        last = t;
        if (received === opts.tasks) resolveDone();
      }
      await d.ack();
    },
    { prefetch: 2000 },
  );
  const replyTo = resultQueueOf(queue);
  const t0 = now();
  const make = () => {
    return envelopeMessage(createEnvelope({ type: MessageType.Task, payload: null, replyTo }));
  };
  if (opts.rate) {
    const interval = 1000 / opts.rate;
    for (let i = 0; i < opts.tasks; i++) {
      const due = t0 + i * interval;
      const wait = due - now();
      if (wait > 0) await sleep(wait);
      const m = make();
      publishedAt.set(m.id, now());
      await broker.publish(queue, [m]);
    }
  } else {
    for (let i = 0; i < opts.tasks; i += opts.batch) {
      const batch = Array.from({ length: Math.min(opts.batch, opts.tasks - i) }, make);
      const t = now();
      for (const m of batch) publishedAt.set(m.id, t);
      await broker.publish(queue, batch);
    }
  }
  const giveUp = new AbortController();
  const timeout = sleep(Math.max(60_000, opts.tasks * 5), undefined, {
    signal: giveUp.signal,
  }).catch(() => undefined);
  await Promise.race([done, timeout]);
  giveUp.abort();
  await consumer.cancel();
  const seconds = ((last || now()) - t0) / 1000;
  return {
    received,
    seconds,
    tasksPerSec: received / seconds,
    startLatencyMs: summarize(start),
    e2eLatencyMs: summarize(e2e),
  };
}
