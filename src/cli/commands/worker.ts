import { Command, InvalidArgumentError, Option } from 'commander';
import { loadTemplate } from '../../job/template.js';
import { declareQueueOrKeep } from '../../broker/contract.js';
import { openBroker } from '../../broker/open.js';
import { Requester } from '../../patterns/request-reply.js';
import { InputError } from '../../protocol/errors.js';
import { experimentQueues } from '../../protocol/trial.js';
import { loadExperimentSpec, type ExperimentSpec } from '../../scheduler/spec.js';
import { serveStatusRequests, type WorkerReport } from '../../worker/control.js';
import { execHandler } from '../../worker/handlers/exec.js';
import { httpPoolHandler } from '../../worker/handlers/http-pool.js';
import { mapPayload } from '../../worker/handlers/map-payload.js';
import { loadModuleHandler } from '../../worker/handlers/module.js';
import type { TaskHandler } from '../../worker/handlers/types.js';
import { getHostInfo } from '../../worker/host-info.js';
import { installSignalHandlers, startWorker } from '../../worker/runtime.js';
import { trialHandler, type TrialRun } from '../../worker/trial/trial-handler.js';
import { execTrialRun, httpTrialRun, moduleTrialRun } from '../../worker/trial/runners.js';
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
  trial?: boolean;
  experiment?: string;
  stopOnStdinEnd?: boolean;
  template?: string;
  pricePerHour?: number;
  gateway?: string;
  token?: string;
}

/** Commander parser for --price-per-hour: a finite number ≥ 0. */
function price(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) {
    throw new InvalidArgumentError(`"${value}" is not a price per hour (a number ≥ 0, e.g. 2.5)`);
  }
  return n;
}

/** The URLs of an --http flag or a spec's `http` runner. */
function httpUrls(value: string | readonly string[], flag: string): string[] {
  const urls = (typeof value === 'string' ? value.split(',') : [...value])
    .map((u) => u.trim())
    .filter((u) => u !== '');
  for (const u of urls) {
    try {
      new URL(u);
    } catch {
      throw new InputError(`${flag}: "${u}" is not a valid URL`);
    }
  }
  if (urls.length === 0) throw new InputError(`${flag}: give at least one URL`);
  return urls;
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
  const urls = httpUrls(opts.http!, '--http');
  return { handler: httpPoolHandler(urls), label: `http ${urls.join(',')}` };
}

/**
 * Picks the trial runner: from --module / --exec / --http when one is given, else from the
 * spec's `runner` (a module path and an exec command's working directory are relative to
 * the spec file).
 */
async function trialRunFrom(
  opts: WorkerOptions,
  spec: ExperimentSpec | undefined,
): Promise<{ run: TrialRun; label: string }> {
  const chosen = [opts.module, opts.exec, opts.http].filter((v) => v !== undefined);
  if (chosen.length > 1) {
    throw new InputError('choose one trial runner: --module PATH, --exec "CMD" or --http URLS');
  }
  if (opts.module !== undefined) {
    return { run: await moduleTrialRun(opts.module), label: `trial module ${opts.module}` };
  }
  if (opts.exec !== undefined)
    return { run: execTrialRun(opts.exec), label: `trial exec ${opts.exec}` };
  if (opts.http !== undefined) {
    const urls = httpUrls(opts.http, '--http');
    return { run: httpTrialRun(urls), label: `trial http ${urls.join(',')}` };
  }
  const runner = spec?.runner;
  if (!runner || !opts.experiment) {
    throw new InputError(
      'a trial worker needs a runner: --module PATH, --exec "CMD" or --http URLS, or a spec with a `runner`',
    );
  }
  // loadExperimentSpec made the module path absolute and set the command's cwd.
  if ('module' in runner) {
    return { run: await moduleTrialRun(runner.module), label: `trial module ${runner.module}` };
  }
  if ('exec' in runner) {
    return {
      run: execTrialRun(runner.exec, runner.cwd !== undefined ? { cwd: runner.cwd } : {}),
      label: `trial exec ${runner.exec}`,
    };
  }
  const urls = httpUrls(runner.http, 'runner.http');
  return { run: httpTrialRun(urls), label: `trial http ${urls.join(',')}` };
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
    .argument('[queue]', "queue to consume (default with --experiment: the experiment's)")
    .option('--module <path>', 'JS module whose default export is async (payload, ctx) => result')
    .option('--exec <command>', 'shell command: payload JSON on stdin, result JSON on stdout')
    .option('--http <urls>', 'comma-separated endpoints; POST the payload, least outstanding first')
    .option(
      '--template <file>',
      'fill this template from each payload\'s fields and give the handler the result (.json: a JSON value; other files: text sent as {"prompt": ...})',
    )
    .addOption(
      new Option(
        '--price-per-hour <n>',
        "what this worker's machine costs per hour, recorded on every result (default: none)",
      )
        .env('QTUNE_PRICE_PER_HOUR')
        .argParser(price),
    )
    .option('--gateway <url>', 'pull tasks through a `qtune serve` HTTP gateway at this URL')
    .addOption(
      new Option('--token <token>', 'bearer token for --gateway (role worker)').env('QTUNE_TOKEN'),
    )
    .option(
      '--trial',
      'run AutoML trials: --module exports async (params, trial) => value, --exec is a command template',
    )
    .option(
      '--experiment <spec>',
      'run the trials of the experiment in this spec file (queue, runner, timeout, retries from the spec)',
    )
    .addOption(
      new Option(
        '--stop-on-stdin-end',
        'stop when stdin closes, handing running tasks back (for supervisors)',
      ).hideHelp(),
    )
    .addOption(
      new Option('-c, --concurrency <n>', 'tasks run at once').argParser(intAtLeast(1)).default(1),
    )
    .addOption(
      new Option(
        '--prefetch <n>',
        'tasks held from the broker at once (default: 2 × concurrency; trials: concurrency)',
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
      action(async (queueArg: string | undefined, opts: WorkerOptions, cmd: Command) => {
        const ctx = contextOf(cmd);
        const spec =
          opts.experiment !== undefined ? loadExperimentSpec(opts.experiment) : undefined;
        const queue = queueArg ?? (spec ? experimentQueues(spec.name).trials : undefined);
        if (queue === undefined) throw new InputError('give a queue, or --experiment SPEC');
        const trialMode = opts.trial === true || spec !== undefined;
        const trialRun = trialMode ? await trialRunFrom(opts, spec) : undefined;
        const plain = trialRun ? undefined : await handlerFrom(opts);
        if (opts.template !== undefined && trialMode) {
          throw new InputError(
            '--template fills task payloads for --module, --exec or --http, not trials',
          );
        }
        const template =
          opts.template !== undefined ? await loadTemplate(opts.template) : undefined;
        // A worker may declare the experiment's queue before its scheduler does: same policy.
        if (spec && cmd.getOptionValueSource('maxAttempts') === 'default') {
          opts.maxAttempts = spec.maxRetries + 1;
        }
        if (spec && cmd.getOptionValueSource('lease') === 'default') opts.lease = spec.lease;
        // Trials are long: a worker holds only those it runs, leaving the rest to idle workers.
        if (trialMode && opts.prefetch === undefined) opts.prefetch = opts.concurrency;
        // --gateway URL (or --broker with an http(s) URL): the Broker contract over the gateway.
        const gatewayUrl =
          opts.gateway ??
          (/^https?:\/\//i.test(ctx.globals.broker ?? '') ? ctx.globals.broker : undefined);
        const broker =
          gatewayUrl !== undefined
            ? await openBroker(gatewayUrl, opts.token !== undefined ? { token: opts.token } : {})
            : await ctx.openBroker();
        let requester: Requester | undefined;
        let handler: TaskHandler;
        let label: string;
        if (trialRun) {
          requester = await Requester.create(broker);
          handler = trialHandler(trialRun.run, { requester });
          label = trialRun.label;
        } else {
          ({ handler, label } = plain!);
          if (template) {
            // The handler gets the filled template; a payload that cannot fill it is dead-lettered.
            handler = mapPayload(handler, (payload) => template.render(payload));
            label += ` with template ${template.name}`;
          }
        }
        // The first declaration of a queue fixes its policy; later ones keep it.
        const kept = await declareQueueOrKeep(broker, queue, {
          leaseMs: opts.lease,
          maxDeliveries: opts.maxAttempts,
        });
        if (kept) {
          const asked = ['lease', 'maxAttempts'].some((o) => cmd.getOptionValueSource(o) === 'cli');
          ctx.logger[asked ? 'warn' : 'debug'](`${kept.message}: the queue keeps its own`);
        }
        const host = await getHostInfo({ pricePerHour: opts.pricePerHour });
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
          if (opts.stopOnStdinEnd) {
            process.stdin.on('error', () => {});
            process.stdin.on('end', () => {
              // The supervisor is gone: hand running tasks back at once for its successor.
              ctx.logger.info('stdin closed: stopping, running tasks go back to the queue');
              worker.stop({ graceMs: 0 }).then(resolve, resolve);
            });
            process.stdin.resume();
          }
          installSignalHandlers(worker, {
            graceMs: opts.grace,
            onSignal: (signal) =>
              ctx.logger.info({ signal }, 'stopping: finishing tasks in flight'),
            onExit: () => resolve(),
          });
        });
        if (opts.stopOnStdinEnd) process.stdin.destroy();
        clearInterval(rateTimer);
        await control.cancel();
        await requester?.close();
        await broker.close();
        const s = worker.stats();
        ctx.logger.info(
          { done: s.done, failed: s.failed, deadLettered: s.deadLettered },
          'worker stopped',
        );
      }),
    );
}
