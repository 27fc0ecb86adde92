import { Command, Option } from 'commander';
import { InputError } from '../../protocol/errors.js';
import { serveStatusRequests, type WorkerReport } from '../../worker/control.js';
import { execHandler } from '../../worker/handlers/exec.js';
import { httpPoolHandler } from '../../worker/handlers/http-pool.js';
import { loadModuleHandler } from '../../worker/handlers/module.js';
import type { TaskHandler } from '../../worker/handlers/types.js';
import { getHostInfo } from '../../worker/host-info.js';
import { installSignalHandlers, startWorker } from '../../worker/runtime.js';
import { action, contextOf } from '../context.js';
import { intAtLeast, parseDuration } from '../options.js';

interface WorkerOptions {
  module?: string;
  exec?: string;
  http?: string;
  concurrency: number;
  prefetch?: number;
  timeout?: number;
  maxAttempts: number;
  backoff: number;
  backoffMax: number;
  grace: number;
  lease: number;
}

/** Picks the handler from exactly one of --module, --exec, --http. */
async function handlerFrom(opts: WorkerOptions): Promise<{ handler: TaskHandler; label: string }> {
  const chosen = [opts.module, opts.exec, opts.http].filter((v) => v !== undefined);
  if (chosen.length !== 1) {
    throw new InputError('choose exactly one handler: --module PATH, --exec "CMD" or --http URLS');
  }
  if (opts.module !== undefined) {
    return { handler: await loadModuleHandler(opts.module), label: `module ${opts.module}` };
  }
  if (opts.exec !== undefined)
    return { handler: execHandler(opts.exec), label: `exec ${opts.exec}` };
  const urls = opts
    .http!.split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '');
  for (const u of urls) {
    try {
      new URL(u);
    } catch {
      throw new InputError(`--http: "${u}" is not a valid URL`);
    }
  }
  if (urls.length === 0) throw new InputError('--http: give at least one URL');
  return { handler: httpPoolHandler(urls), label: `http ${urls.join(',')}` };
}

/** Tasks per second over the last `windowMs`, from samples of the done counter. */
function rateMeter(windowMs = 10_000) {
  const samples: { t: number; done: number }[] = [];
  return (done: number): number => {
    const now = Date.now();
    samples.push({ t: now, done });
    while (samples.length > 2 && samples[0]!.t < now - windowMs) samples.shift();
    const first = samples[0]!;
    const dt = (now - first.t) / 1000;
    return dt > 0 ? (done - first.done) / dt : 0;
  };
}

export function workerCommand(): Command {
  return new Command('worker')
    .description(
      'consume tasks from a queue and run them with a JS module, a command or HTTP endpoints',
    )
    .argument('<queue>', 'queue to consume')
    .option('--module <path>', 'JS module whose default export is async (payload, ctx) => result')
    .option('--exec <command>', 'shell command: payload JSON on stdin, result JSON on stdout')
    .option('--http <urls>', 'comma-separated endpoints; POST the payload, least outstanding first')
    .addOption(
      new Option('-c, --concurrency <n>', 'tasks run at once').argParser(intAtLeast(1)).default(1),
    )
    .addOption(
      new Option(
        '--prefetch <n>',
        'tasks held from the broker at once (default: 2 × concurrency)',
      ).argParser(intAtLeast(1)),
    )
    .addOption(
      new Option(
        '--timeout <duration>',
        'time limit per task, e.g. 30s, 10m (default: none)',
      ).argParser(parseDuration),
    )
    .addOption(
      new Option('--max-attempts <n>', 'attempts before a task is dead-lettered')
        .argParser(intAtLeast(1))
        .default(3),
    )
    .addOption(
      new Option('--backoff <duration>', 'first retry delay, doubled each attempt')
        .argParser(parseDuration)
        .default(1000, '1s'),
    )
    .addOption(
      new Option('--backoff-max <duration>', 'longest retry delay')
        .argParser(parseDuration)
        .default(60_000, '60s'),
    )
    .addOption(
      new Option(
        '--lease <duration>',
        'lease per task when this worker creates the queue; a live worker keeps extending it',
      )
        .argParser(parseDuration)
        .default(30_000, '30s'),
    )
    .addOption(
      new Option('--grace <duration>', 'on SIGTERM/SIGINT, time to let running tasks finish')
        .argParser(parseDuration)
        .default(30_000, '30s'),
    )
    .addHelpText(
      'after',
      '\nSIGTERM or SIGINT: no new work, running tasks finish within --grace, unstarted ones go back\n' +
        'to the queue, exit 0. A second signal exits at once (leases bring those tasks back).\n' +
        'Exit codes: 0 stopped cleanly, 2 bad input, 3 broker unavailable, 130 forced stop.',
    )
    .action(
      action(async (queue: string, opts: WorkerOptions, cmd: Command) => {
        const ctx = contextOf(cmd);
        const { handler, label } = await handlerFrom(opts);
        const broker = await ctx.openBroker();
        // The first declaration of a queue fixes its policy; later ones keep it.
        await broker.declareQueue(queue, { leaseMs: opts.lease, maxDeliveries: opts.maxAttempts });
        const host = await getHostInfo();
        const worker = await startWorker({
          broker,
          queue,
          handler,
          concurrency: opts.concurrency,
          prefetch: opts.prefetch,
          timeoutMs: opts.timeout,
          maxAttempts: opts.maxAttempts,
          backoff: { baseMs: opts.backoff, maxMs: opts.backoffMax },
          logger: ctx.logger,
          hostInfo: host,
        });
        const rate = rateMeter();
        const report = (): WorkerReport => {
          const s = worker.stats();
          return {
            worker: host,
            queue,
            startedAt: s.startedAt,
            done: s.done,
            failed: s.failed,
            deadLettered: s.deadLettered,
            inFlight: s.inFlight,
            rate: rate(s.done),
          };
        };
        const rateTimer = setInterval(() => rate(worker.stats().done), 1000);
        rateTimer.unref();
        const control = await serveStatusRequests(broker, report);
        ctx.logger.info(
          { queue, handler: label, concurrency: opts.concurrency, host: host.host, pid: host.pid },
          'worker started',
        );
        await new Promise<void>((resolve) => {
          installSignalHandlers(worker, {
            graceMs: opts.grace,
            onSignal: (signal) =>
              ctx.logger.info({ signal }, 'stopping: finishing tasks in flight'),
            onExit: () => resolve(),
          });
        });
        clearInterval(rateTimer);
        await control.cancel();
        await broker.close();
        const s = worker.stats();
        ctx.logger.info(
          { done: s.done, failed: s.failed, deadLettered: s.deadLettered },
          'worker stopped',
        );
      }),
    );
}
