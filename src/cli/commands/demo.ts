import { randomUUID } from 'node:crypto';
import { Command, Option } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import { parseBrokerUrl } from '../../broker/open.js';
import type { Delivery } from '../../broker/contract.js';
import { resultQueueOf, submitTasks } from '../../patterns/work-queue.js';
import { decode } from '../../protocol/codec.js';
import type { TaskResult } from '../../protocol/result.js';
import { action, contextOf } from '../context.js';
import { builtinHandler, spawnLocalWorkers, waitForConsumers } from '../local-workers.js';
import { intAtLeast } from '../options.js';

interface DemoOptions {
  tasks: number;
  workers: number;
  json?: boolean;
}

export function demoCommand(): Command {
  return new Command('demo')
    .description('run a self-contained job on the embedded broker with local worker processes')
    .addOption(new Option('--tasks <n>', 'tasks to run').argParser(intAtLeast(1)).default(2000))
    .addOption(
      new Option('--workers <n>', 'local worker processes').argParser(intAtLeast(1)).default(2),
    )
    .option('--json', 'print the summary as JSON')
    .addHelpText(
      'after',
      '\nEach task counts the primes below n; results come back through the broker with the\n' +
        'worker that ran them. Exit codes: 0 every task done, 1 some failed, 3 broker unavailable.',
    )
    .action(
      action(async (opts: DemoOptions, cmd: Command) => {
        const ctx = contextOf(cmd);
        const target = parseBrokerUrl(ctx.globals.broker);
        const url = target.location;
        const broker = await ctx.openBroker();
        const queue = `demo.${randomUUID().slice(0, 8)}`;
        await broker.declareQueue(queue);
        await broker.declareQueue(resultQueueOf(queue));
        const workers = spawnLocalWorkers({
          brokerUrl: url,
          queue,
          module: builtinHandler('demo-handler'),
          count: opts.workers,
          concurrency: 4,
        });
        const perWorker = new Map<string, number>();
        let done = 0;
        let failed = 0;
        let totalPrimes = 0;
        const bar = new SingleBar(
          {
            format: 'demo |{bar}| {value}/{total} tasks | {rate} tasks/s | eta {eta}s',
            hideCursor: true,
            noTTYOutput: true,
            notTTYSchedule: 1000,
            stream: process.stderr,
          },
          Presets.shades_classic,
        );
        const t0 = Date.now();
        try {
          await waitForConsumers(broker, queue, opts.workers);
          ctx.logger.info(
            { broker: `${target.kind} ${url}`, queue, workers: opts.workers },
            'demo started',
          );
          bar.start(opts.tasks, 0, { rate: '0' });
          const all = new Promise<void>((resolve) => {
            void broker.consume(
              resultQueueOf(queue),
              async (d: Delivery) => {
                const r = decode(d.body).payload as TaskResult<{ primes: number }>;
                const who = `${r.worker.host}:${r.worker.pid}`;
                perWorker.set(who, (perWorker.get(who) ?? 0) + 1);
                if (r.ok) {
                  done++;
                  totalPrimes += r.value?.primes ?? 0;
                } else failed++;
                await d.ack();
                const secs = (Date.now() - t0) / 1000;
                bar.update(done + failed, {
                  rate: ((done + failed) / Math.max(secs, 0.001)).toFixed(0),
                });
                if (done + failed === opts.tasks) resolve();
              },
              { prefetch: 500 },
            );
          });
          const items = Array.from({ length: opts.tasks }, (_, i) => ({
            payload: { n: 2000 + ((i * 7919) % 20000) },
            key: `n-${i}`,
          }));
          await submitTasks(broker, queue, items);
          await all;
          bar.stop();
        } finally {
          bar.stop();
          await workers.stop();
          await broker.deleteQueue(queue);
          await broker.deleteQueue(resultQueueOf(queue));
          await broker.close();
        }
        const seconds = (Date.now() - t0) / 1000;
        const summary = {
          tasks: opts.tasks,
          done,
          failed,
          seconds,
          tasksPerSec: Math.round((done + failed) / seconds),
          totalPrimes,
          perWorker: Object.fromEntries(perWorker),
        };
        if (opts.json) process.stdout.write(JSON.stringify(summary) + '\n');
        else {
          process.stdout.write(
            `\n${done} of ${opts.tasks} tasks done, ${failed} failed, in ${seconds.toFixed(2)} s (${summary.tasksPerSec} tasks/s)\n` +
              [...perWorker].map(([w, n]) => `  worker ${w}: ${n} tasks`).join('\n') +
              `\nprimes counted across all tasks: ${totalPrimes}\n`,
          );
        }
        return failed === 0 ? 0 : 1;
      }),
    );
}
