import { Command, InvalidArgumentError, Option } from 'commander';
import { loadTemplate } from '../../job/template.js';
import { declareQueueOrKeep } from '../../broker/contract.js';
import { redact } from '../../protocol/redact.js';
import { Requester } from '../../patterns/request-reply.js';
import { InputError } from '../../protocol/errors.js';
import { assertName } from '../../protocol/names.js';
import { experimentQueues } from '../../protocol/trial.js';
import { loadExperimentSpec, type ExperimentSpec } from '../../scheduler/spec.js';
import { endpointReport, serveStatusRequests, type WorkerReport } from '../../worker/control.js';
import {
  BREAKER_DEFAULTS,
  type BreakerOptions,
  type BreakerTransition,
} from '../../worker/handlers/circuit-breaker.js';
import { execHandler } from '../../worker/handlers/exec.js';
import { checkEndpointUrl, HttpEndpointPool } from '../../worker/handlers/http-pool.js';
import type { Logger } from '../../worker/logger.js';
import { mapPayload } from '../../worker/handlers/map-payload.js';
import { loadModuleHandler } from '../../worker/handlers/module.js';
import type { TaskHandler } from '../../worker/handlers/types.js';
import { getHostInfo, resolveGpuSlots } from '../../worker/host-info.js';
import { installSignalHandlers, startWorker } from '../../worker/runtime.js';
import { trialHandler, type TrialRun } from '../../worker/trial/trial-handler.js';
import { execTrialRun, httpTrialRun, moduleTrialRun } from '../../worker/trial/runners.js';
import { action, contextOf } from '../context.js';
import { connectTimeoutOption, intAtLeast, metricsOptions, parseDuration } from '../options.js';
import { qtuneVersion } from '../version.js';

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
  connectTimeout?: number;
  breakerFailures: number;
  breakerFailureRate: number;
  breakerWindow: number;
  breakerCooldown: number;
  gpus?: 'auto' | number[];
  metricsPort?: number;
  metricsHost: string;
  metricsProcess?: boolean;
}

/** Commander parser for --gpus: `auto`, or distinct GPU indices such as `0,1,3`. */
function gpuList(value: string): 'auto' | number[] {
  if (value.trim() === 'auto') return 'auto';
  const parts = value.split(',').map((p) => p.trim());
  const indices = parts.map(Number);
  const bad = parts.find((p) => !/^\d+$/.test(p));
  if (bad !== undefined) {
    throw new InvalidArgumentError(
      `"${value}" is not a GPU list: "${bad}" is not a GPU index (use auto, or indices such as 0,1,3)`,
    );
  }
  const repeated = indices.find((n, i) => indices.indexOf(n) !== i);
  if (repeated !== undefined) {
    throw new InvalidArgumentError(`"${value}" names GPU ${repeated} twice`);
  }
  return indices;
}

const BREAKER_FLAGS = [
  ['breakerFailures', '--breaker-failures'],
  ['breakerFailureRate', '--breaker-failure-rate'],
  ['breakerWindow', '--breaker-window'],
  ['breakerCooldown', '--breaker-cooldown'],
] as const;

/** Commander parser for --breaker-failure-rate: a share in (0, 1], or a percentage like 50%. */
function share(value: string): number {
  const percent = value.trim().endsWith('%');
  const n = Number(percent ? value.trim().slice(0, -1) : value) / (percent ? 100 : 1);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 1) {
    throw new InvalidArgumentError(
      `"${value}" is not a failure rate (a share in (0, 1], e.g. 0.5 or 50%)`,
    );
  }
  return n;
}

/** The circuit-breaker settings of the --breaker-* flags. */
function breakerOptions(opts: WorkerOptions): BreakerOptions {
  return {
    failures: opts.breakerFailures,
    failureRate: opts.breakerFailureRate,
    window: opts.breakerWindow,
    minRequests: Math.ceil(opts.breakerWindow / 2),
    cooldownMs: opts.breakerCooldown,
  };
}

/** Logs an endpoint's breaker opening (warn) and closing again (info); re-opens after a failed probe at debug. */
function logBreakerChanges(logger: Logger) {
  return (url: string, t: BreakerTransition): void => {
    const endpoint = redact(url);
    if (t.to === 'open' && t.from === 'up') {
      logger.warn({ endpoint, reason: t.reason }, 'endpoint taken out of rotation (circuit open)');
    } else if (t.to === 'up') {
      logger.info({ endpoint }, 'endpoint back in rotation (probe succeeded)');
    } else {
      logger.debug({ endpoint, from: t.from, to: t.to, reason: t.reason }, 'endpoint circuit');
    }
  };
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
  for (const u of urls) checkEndpointUrl(u, flag);
  if (urls.length === 0) throw new InputError(`${flag}: give at least one URL`);
  return urls;
}

/** Picks the handler from exactly one of --module, --exec, --http. */
async function handlerFrom(
  opts: WorkerOptions,
  logger: Logger,
): Promise<{ handler: TaskHandler; label: string; pool?: HttpEndpointPool }> {
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
  const pool = new HttpEndpointPool(urls, {
    breaker: breakerOptions(opts),
    onBreakerChange: logBreakerChanges(logger),
  });
  return { handler: pool.handler(), label: `http ${urls.map(redact).join(',')}`, pool };
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
    .option(
      '--http <urls>',
      'comma-separated http(s) endpoints; POST the payload, least outstanding first, skipping endpoints whose circuit is open',
    )
    .addOption(
      new Option(
        '--breaker-failures <n>',
        'with --http: consecutive failures (connection error, 5xx, 429) that take an endpoint out of rotation',
      )
        .argParser(intAtLeast(1))
        .default(BREAKER_DEFAULTS.failures),
    )
    .addOption(
      new Option(
        '--breaker-failure-rate <share>',
        'with --http: failed share of the last --breaker-window requests that does the same (e.g. 0.5 or 50%)',
      )
        .argParser(share)
        .default(BREAKER_DEFAULTS.failureRate, '50%'),
    )
    .addOption(
      new Option(
        '--breaker-window <n>',
        'with --http: requests the failure rate is taken over (it applies once half of them are in)',
      )
        .argParser(intAtLeast(1))
        .default(BREAKER_DEFAULTS.window),
    )
    .addOption(
      new Option(
        '--breaker-cooldown <duration>',
        'with --http: how long an endpoint stays out before one probe request tries it again',
      )
        .argParser(parseDuration)
        .default(BREAKER_DEFAULTS.cooldownMs, '2s'),
    )
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
      new Option(
        '-c, --concurrency <n>',
        'tasks run at once (with --gpus: one per GPU, or a multiple of the number of GPUs)',
      )
        .argParser(intAtLeast(1))
        .default(1),
    )
    .addOption(
      new Option(
        '--gpus <list>',
        'GPU slots: auto (every GPU nvidia-smi lists) or indices such as 0,1,3; each running task holds one GPU (CUDA_VISIBLE_DEVICES for --exec, ctx.gpu for --module) (default: none)',
      ).argParser(gpuList),
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
    .addOption(connectTimeoutOption())
    .addOption(metricsOptions()[0]!)
    .addOption(metricsOptions()[1]!)
    .option(
      '--metrics-process',
      "with --metrics-port, also export the process's CPU, memory, event-loop and GC metrics (costs a few % of throughput on very short tasks)",
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
        if (queueArg !== undefined) assertName('queue', queueArg);
        const ctx = contextOf(cmd);
        const spec =
          opts.experiment !== undefined ? loadExperimentSpec(opts.experiment) : undefined;
        const queue = queueArg ?? (spec ? experimentQueues(spec.name).trials : undefined);
        if (queue === undefined) throw new InputError('give a queue, or --experiment SPEC');
        const trialMode = opts.trial === true || spec !== undefined;
        const trialRun = trialMode ? await trialRunFrom(opts, spec) : undefined;
        const breakerSet = BREAKER_FLAGS.filter(
          ([key]) => cmd.getOptionValueSource(key) !== 'default',
        ).map(([, flag]) => flag);
        if (breakerSet.length > 0 && (trialMode || opts.http === undefined)) {
          throw new InputError(
            `${breakerSet.join(', ')}: only with --http on a task worker (trial runners use the defaults)`,
          );
        }
        const plain = trialRun ? undefined : await handlerFrom(opts, ctx.logger);
        let gpus: Awaited<ReturnType<typeof resolveGpuSlots>> | undefined;
        if (opts.gpus !== undefined) {
          if (opts.http !== undefined || (spec?.runner && 'http' in spec.runner)) {
            throw new InputError(
              '--gpus: not with HTTP endpoints (the model servers hold the GPUs)',
            );
          }
          gpus = await resolveGpuSlots(opts.gpus);
          if (cmd.getOptionValueSource('concurrency') === 'default') opts.concurrency = gpus.length;
          else if (opts.concurrency % gpus.length !== 0) {
            throw new InputError(
              `--concurrency ${opts.concurrency}: with --gpus it must be a multiple of the number of GPUs (${gpus.length}: ${gpus.map((g) => g.index).join(',')})`,
            );
          }
        }
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
        const broker = await ctx.openBrokerWaiting({
          ...(gatewayUrl !== undefined && { url: gatewayUrl }),
          ...(opts.token !== undefined && { token: opts.token }),
          ...(opts.connectTimeout !== undefined && { timeoutMs: opts.connectTimeout }),
        });
        let requester: Requester | undefined;
        let handler: TaskHandler;
        let label: string;
        const pool = plain?.pool;
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
        // prom-client loads only for a worker that serves metrics; the endpoint listens before
        // anything is consumed, so a port in use stops the worker before it takes a task.
        const metricsModule =
          opts.metricsPort !== undefined ? await import('../../worker/metrics.js') : undefined;
        const metrics =
          metricsModule &&
          new metricsModule.WorkerMetrics({
            queue,
            host,
            ...(gpus && { gpus }),
            ...(pool && { endpoints: () => pool.snapshot() }),
            version: qtuneVersion(),
            processMetrics: opts.metricsProcess === true,
          });
        const metricsServer =
          metrics &&
          (await metricsModule!.serveMetrics(metrics.registry, {
            port: opts.metricsPort!,
            host: opts.metricsHost,
          }));
        const worker = await startWorker({
          broker,
          queue,
          handler,
          concurrency: opts.concurrency,
          ...(gpus && { gpus }),
          prefetch: opts.prefetch,
          timeoutMs: opts.timeout,
          maxAttempts: opts.maxAttempts,
          backoff: { baseMs: opts.backoff, maxMs: opts.backoffMax },
          logger: ctx.logger,
          hostInfo: host,
          ...(metrics && { observer: metrics }),
        });
        metrics?.attach(worker);
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
            ...(pool && { endpoints: pool.snapshot().map((e) => endpointReport(e)) }),
          };
        };
        const rateTimer = setInterval(() => rate(worker.stats().done), 1000);
        rateTimer.unref();
        if (metricsServer) ctx.logger.info({ url: metricsServer.url }, 'serving metrics');
        const control = await serveStatusRequests(broker, report);
        ctx.logger.info(
          {
            queue,
            handler: label,
            concurrency: opts.concurrency,
            ...(gpus && { gpus: gpus.map((g) => g.index) }),
            host: host.host,
            pid: host.pid,
          },
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
        await metricsServer?.close();
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
