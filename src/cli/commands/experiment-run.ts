/**
 * `qtune experiment run` and `resume`: a scheduler in this process, local worker processes,
 * progress on stderr, and the summary at the end.
 */
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import type { Broker } from '../../broker/contract.js';
import { parseBrokerUrl } from '../../broker/open.js';
import { ErrorCode, InputError, NotFoundError, QtuneError } from '../../protocol/errors.js';
import { experimentQueues } from '../../protocol/trial.js';
import { buildExperiment, Scheduler, type SchedulerSummary } from '../../scheduler/scheduler.js';
import type { ExperimentSpec } from '../../scheduler/spec.js';
import { loadExperiment } from '../../scheduler/stored.js';
import { schedulerAttached } from '../../experiment/resume.js';
import { DEFAULT_STORE_PATH, type Store } from '../../store/contract.js';
import { parseStoreUrl } from '../../store/open.js';
import { contextOf, type CommandContext } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { formatMetric, formatParams } from '../format.js';
import { spawnLocalWorkers, type LocalWorkers } from '../local-workers.js';
import { intAtLeast } from '../options.js';

/** Folder for files next to the store: the SQLite file's folder, else ./.qtune. */
function storeDir(cmd: Command): string {
  const target = parseStoreUrl(contextOf(cmd).globals.store);
  return target.kind === 'sqlite' ? dirname(target.location) : resolve(dirname(DEFAULT_STORE_PATH));
}

/** The spec copy that `run` writes for its local workers to read; `delete` removes it. */
export function specCopyPath(cmd: Command, name: string): string {
  return join(storeDir(cmd), 'experiments', `${name}.spec.json`);
}

function openStore(cmd: Command): Promise<Store> {
  return contextOf(cmd).openStore();
}

/**
 * Whether the store may hold experiments: a SQLite store file that does not exist holds none,
 * and commands that only read (or delete) do not create it.
 */
export function storeExists(cmd: Command): boolean {
  const target = parseStoreUrl(contextOf(cmd).globals.store);
  return target.kind !== 'sqlite' || existsSync(target.location);
}

export interface RunOptions {
  workers: number;
  json?: boolean;
}

/** Live progress of a run: a bar on a terminal, a log line every few seconds otherwise. */
function progressOf(ctx: CommandContext, scheduler: Scheduler, json: boolean) {
  const spec = scheduler.spec;
  const t0 = Date.now();
  const c = { finished: 0, pruned: 0, failed: 0 };
  const values = () => {
    const mins = (Date.now() - t0) / 60_000;
    return {
      running: scheduler.inFlight,
      pruned: c.pruned,
      failed: c.failed,
      best: formatMetric(scheduler.best?.value),
      rate: mins > 0 ? (c.finished / mins).toFixed(1) : '0',
    };
  };
  const useBar = !json && ctx.globals.logFormat !== 'json' && process.stderr.isTTY;
  const bar = useBar
    ? new SingleBar(
        {
          format: `${spec.name} |{bar}| {value}/{total} finished | {running} running | {pruned} pruned | {failed} failed | best {best} | {rate} trials/min`,
          hideCursor: true,
          stream: process.stderr,
        },
        Presets.shades_classic,
      )
    : undefined;
  const onFinish = (kind: 'complete' | 'pruned' | 'failed') => () => {
    c.finished++;
    if (kind === 'pruned') c.pruned++;
    if (kind === 'failed') c.failed++;
    bar?.update(c.finished, values());
  };
  scheduler.on('trial:completed', onFinish('complete'));
  scheduler.on('trial:pruned', onFinish('pruned'));
  scheduler.on('trial:failed', onFinish('failed'));
  scheduler.on('trial:started', () => bar?.update(values()));
  let timer: NodeJS.Timeout | undefined;
  return {
    start(alreadyFinished: number) {
      c.finished = alreadyFinished;
      if (bar) bar.start(spec.maxTrials, alreadyFinished, values());
      else {
        timer = setInterval(
          () =>
            ctx.logger.info(
              {
                experiment: spec.name,
                finished: c.finished,
                maxTrials: spec.maxTrials,
                ...values(),
              },
              'progress',
            ),
          5000,
        );
        timer.unref();
      }
    },
    stop() {
      bar?.stop();
      if (timer) clearInterval(timer);
    },
  };
}

/** Runs a scheduler (new or resumed) with local workers until it is done, stopped or interrupted. */
export async function runExperiment(
  cmd: Command,
  opts: RunOptions,
  source: { spec: ExperimentSpec } | { resume: string },
): Promise<number> {
  const ctx = contextOf(cmd);
  const target = parseBrokerUrl(ctx.globals.broker);
  if (opts.workers > 0 && target.kind === 'memory') {
    throw new InputError(
      'the memory broker lives in one process: use --workers 0, or the embedded broker',
    );
  }
  if ('resume' in source && !storeExists(cmd)) throw new NotFoundError('experiment', source.resume);
  const store = await openStore(cmd);
  let broker: Broker | undefined;
  let workers: LocalWorkers | undefined;
  let scheduler: Scheduler | undefined;
  let progress: ReturnType<typeof progressOf> | undefined;
  let interrupted = false;
  const onSignal = (): void => {
    if (interrupted) process.exit(ExitCode.Interrupted);
    interrupted = true;
    ctx.logger.info('interrupted: pausing (resume with `qtune experiment resume`)');
    void scheduler?.pause();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    // Everything is checked before the scheduler stores anything.
    const planned =
      'spec' in source
        ? source.spec
        : (await loadExperiment(store.experiments, source.resume)).spec;
    buildExperiment(planned);
    if (opts.workers > 0) checkLocalRunner(planned);
    broker = await ctx.openBroker();
    if ('resume' in source) {
      // Two schedulers on one experiment would both hand out trials.
      const attached = await schedulerAttached(broker, source.resume);
      if (attached !== undefined) {
        throw new QtuneError(ErrorCode.BrokerState, `${attached}: stop it or let it finish first`);
      }
    }
    scheduler = await Scheduler.start({
      broker,
      store,
      ...('spec' in source ? { spec: source.spec } : { resume: source.resume }),
    });
    scheduler.on('error', (err) => ctx.logger.error({ err: err.message }, 'scheduler error'));
    const spec = scheduler.spec;
    const queues = experimentQueues(spec.name);
    const counts = await store.experiments.counts(spec.name);
    progress = progressOf(ctx, scheduler, opts.json === true);
    if (opts.workers > 0) {
      // Workers read the stored spec (runner paths already absolute) from a copy next to the store.
      const specCopy = specCopyPath(cmd, spec.name);
      mkdirSync(dirname(specCopy), { recursive: true });
      writeFileSync(specCopy, JSON.stringify(spec, null, 2));
      const perWorker = Math.max(1, Math.ceil(spec.concurrency / opts.workers));
      workers = spawnLocalWorkers({
        brokerUrl: target.location,
        queue: queues.trials,
        count: opts.workers,
        concurrency: perWorker,
        prefetch: perWorker,
        args: ['--experiment', specCopy, '--log-level', 'warn'],
        stdio: 'inherit',
        exitWithParent: true,
      });
    } else {
      ctx.logger.info(
        { experiment: spec.name, queue: queues.trials },
        `waiting for workers: qtune worker --experiment <spec> (queue ${queues.trials})`,
      );
    }
    progress.start(counts.complete + counts.pruned + counts.failed);
    const summary = await scheduler.done;
    progress.stop();
    await workers?.stop();
    printSummary(summary, scheduler.spec, opts.json === true);
    if (summary.status === 'paused') return ExitCode.Interrupted;
    if (summary.counts.complete === 0 && summary.counts.failed > 0) return ExitCode.Failure;
    return ExitCode.Ok;
  } finally {
    progress?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await workers?.stop();
    await broker?.close();
    await store.close();
  }
}

/**
 * Checks what local workers need to run the spec's trials: a runner, its module file or its
 * command's working directory. Throws `InputError` naming what is missing.
 */
function checkLocalRunner(spec: ExperimentSpec): void {
  const runner = spec.runner;
  if (!runner) {
    throw new InputError(
      `experiment "${spec.name}": local workers need a \`runner\` in the spec (or use --workers 0)`,
    );
  }
  if ('module' in runner && !existsSync(runner.module)) {
    throw new InputError(
      `experiment "${spec.name}": runner.module "${runner.module}" does not exist`,
    );
  }
  if ('exec' in runner && runner.cwd !== undefined && !isDirectory(runner.cwd)) {
    throw new InputError(
      `experiment "${spec.name}": runner.cwd "${runner.cwd}" is not a directory`,
    );
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function printSummary(summary: SchedulerSummary, spec: ExperimentSpec, json: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify(summary) + '\n');
    return;
  }
  const c = summary.counts;
  const lines = [
    `experiment ${summary.experiment}: ${summary.status}`,
    `  trials: ${c.complete + c.pruned + c.failed} finished of ${spec.maxTrials} (${c.complete} complete, ${c.pruned} pruned, ${c.failed} failed)`,
  ];
  if (summary.best) {
    lines.push(
      `  best: trial ${summary.best.number}, ${spec.objective.metric} = ${formatMetric(summary.best.value)} (${formatParams(summary.best.params)})`,
    );
  }
  if (summary.status === 'paused')
    lines.push(`  resume with: qtune experiment resume ${summary.experiment}`);
  process.stdout.write(lines.join('\n') + '\n');
}

/** `--workers N` of `run` and `resume`. */
export const workersOption = (): Option =>
  new Option(
    '--workers <n>',
    'local worker processes to start (0: remote workers attach with `qtune worker`)',
  )
    .argParser(intAtLeast(0))
    .default(2);
