import { existsSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, Option, type CommanderError } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import { stringify } from 'csv-stringify/sync';
import type { Broker } from '../../broker/contract.js';
import { parseBrokerUrl } from '../../broker/open.js';
import { InputError, NotFoundError } from '../../protocol/errors.js';
import { experimentQueues } from '../../protocol/trial.js';
import { assertDeletable, deleteExperiment, findExperiment } from '../../scheduler/manage.js';
import { buildExperiment, Scheduler, type SchedulerSummary } from '../../scheduler/scheduler.js';
import {
  experimentSpecJsonSchema,
  loadExperimentSpec,
  parseExperimentSpec,
  type ExperimentSpec,
} from '../../scheduler/spec.js';
import type { ExperimentRecord, ExperimentStore, TrialRecord } from '../../store/experiments.js';
import { DEFAULT_STORE_PATH, type Store } from '../../store/contract.js';
import { parseStoreUrl } from '../../store/open.js';
import { action, contextOf, type CommandContext } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { CSV_OPTIONS, table } from '../format.js';
import { spawnLocalWorkers, type LocalWorkers } from '../local-workers.js';
import { intAtLeast, parseDuration } from '../options.js';

/** Folder for files next to the store: the SQLite file's folder, else ./.qtune. */
function storeDir(cmd: Command): string {
  const target = parseStoreUrl(contextOf(cmd).globals.store);
  return target.kind === 'sqlite' ? dirname(target.location) : resolve(dirname(DEFAULT_STORE_PATH));
}

function openStore(cmd: Command): Promise<Store> {
  return contextOf(cmd).openStore();
}

async function withStore<T>(cmd: Command, fn: (store: ExperimentStore) => Promise<T>): Promise<T> {
  const store = await openStore(cmd);
  try {
    return await fn(store.experiments);
  } finally {
    await store.close();
  }
}

/**
 * Whether the store may hold experiments: a SQLite store file that does not exist holds none,
 * and commands that only read (or delete) do not create it.
 */
function storeExists(cmd: Command): boolean {
  const target = parseStoreUrl(contextOf(cmd).globals.store);
  return target.kind !== 'sqlite' || existsSync(target.location);
}

/** withStore for a command about experiment `name`: an unknown name is NotFoundError (exit 4). */
async function withExperimentStore<T>(
  cmd: Command,
  name: string,
  fn: (store: ExperimentStore) => Promise<T>,
): Promise<T> {
  if (!storeExists(cmd)) throw new NotFoundError('experiment', name);
  return withStore(cmd, fn);
}

async function experimentOf(
  store: ExperimentStore,
  name: string,
): Promise<{ exp: ExperimentRecord; spec: ExperimentSpec }> {
  const exp = await findExperiment(store, name);
  return { exp, spec: parseExperimentSpec(exp.spec, `stored spec of experiment "${name}"`) };
}

/** Best complete trial in the objective's direction. */
function bestOf(trials: readonly TrialRecord[], spec: ExperimentSpec): TrialRecord | undefined {
  const sign = spec.objective.direction === 'maximize' ? -1 : 1;
  let best: TrialRecord | undefined;
  for (const t of trials) {
    if (t.status !== 'complete' || t.value === undefined) continue;
    if (!best || sign * t.value < sign * best.value!) best = t;
  }
  return best;
}

function fmt(v: number | undefined): string {
  if (v === undefined) return '-';
  return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0)
    ? v.toExponential(4)
    : String(Number(v.toPrecision(6)));
}

function formatParams(params: TrialRecord['params']): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${typeof v === 'number' ? fmt(v) : String(v)}`)
    .join(' ');
}

/** Trials finished per minute over the experiment's finished trials. */
function trialsPerMinute(trials: readonly TrialRecord[]): number {
  const done = trials.filter((t) => t.finishedAt !== undefined);
  if (done.length === 0) return 0;
  const first = Math.min(...trials.map((t) => t.createdAt));
  const last = Math.max(...done.map((t) => t.finishedAt!));
  return last > first ? (done.length * 60_000) / (last - first) : 0;
}

async function statusOf(store: ExperimentStore, name: string) {
  const { exp, spec } = await experimentOf(store, name);
  const trials = await store.listTrials(name);
  const counts = await store.counts(name);
  const best = bestOf(trials, spec);
  return {
    name,
    status: exp.status,
    objective: spec.objective,
    maxTrials: spec.maxTrials,
    finished: counts.complete + counts.pruned + counts.failed,
    running: counts.running + counts.pending,
    complete: counts.complete,
    pruned: counts.pruned,
    failed: counts.failed,
    trialsPerMinute: Math.round(trialsPerMinute(trials) * 10) / 10,
    ...(best && { best: { number: best.number, value: best.value, params: best.params } }),
    createdAt: exp.createdAt,
    updatedAt: exp.updatedAt,
  };
}

function trialRow(t: TrialRecord): Record<string, unknown> {
  return {
    number: t.number,
    status: t.status,
    value: t.value ?? null,
    step: t.step ?? null,
    params: t.params,
    ...(t.metrics && { metrics: t.metrics }),
    ...(t.error !== undefined && { error: t.error }),
    attempt: t.attempt ?? null,
    host: t.worker?.host ?? null,
    gpu: t.worker?.gpus?.[0]?.name ?? null,
    createdAt: t.createdAt,
    startedAt: t.startedAt ?? null,
    finishedAt: t.finishedAt ?? null,
    durationMs:
      t.startedAt !== undefined && t.finishedAt !== undefined ? t.finishedAt - t.startedAt : null,
  };
}

function trialsCsv(trials: readonly TrialRecord[], spec: ExperimentSpec): string {
  const names = Object.keys(spec.space);
  const header = [
    'number',
    'status',
    'value',
    'step',
    ...names.map((n) => `param_${n}`),
    'error',
    'attempt',
    'host',
    'gpu',
    'durationMs',
  ];
  const rows = trials.map((t) => {
    const r = trialRow(t);
    return [
      t.number,
      t.status,
      t.value ?? '',
      t.step ?? '',
      ...names.map((n) => t.params[n] ?? ''),
      t.error ?? '',
      t.attempt ?? '',
      r.host ?? '',
      r.gpu ?? '',
      r.durationMs ?? '',
    ];
  });
  return stringify([header, ...rows], CSV_OPTIONS);
}

interface RunOptions {
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
      best: fmt(scheduler.best?.value),
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
async function runExperiment(
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
        : parseExperimentSpec(
            (await findExperiment(store.experiments, source.resume)).spec,
            `stored spec of experiment "${source.resume}"`,
          );
    buildExperiment(planned);
    if (opts.workers > 0) checkLocalRunner(planned);
    broker = await ctx.openBroker();
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
      const specCopy = join(storeDir(cmd), 'experiments', `${spec.name}.spec.json`);
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
      `  best: trial ${summary.best.number}, ${spec.objective.metric} = ${fmt(summary.best.value)} (${formatParams(summary.best.params)})`,
    );
  }
  if (summary.status === 'paused')
    lines.push(`  resume with: qtune experiment resume ${summary.experiment}`);
  process.stdout.write(lines.join('\n') + '\n');
}

const workersOption = () =>
  new Option(
    '--workers <n>',
    'local worker processes to start (0: remote workers attach with `qtune worker`)',
  )
    .argParser(intAtLeast(0))
    .default(2);

/** commander reports bad usage (unknown option, missing argument) with 1; scripts get 2. */
function usageExit(err: CommanderError): never {
  const help = ['commander.helpDisplayed', 'commander.help', 'commander.version'];
  process.exit(help.includes(err.code) ? ExitCode.Ok : ExitCode.BadInput);
}

export function experimentCommand(): Command {
  const experiment = new Command('experiment')
    .description('run and inspect AutoML experiments (hyperparameter searches)')
    // Subcommands copy these settings when created; the program's own reach only `experiment`.
    .showHelpAfterError()
    .exitOverride(usageExit);

  experiment
    .command('run')
    .description(
      'start an experiment from a spec file, with local workers, and follow it to the end',
    )
    .argument('<spec>', 'experiment spec, YAML or JSON (see docs/automl.md)')
    .addOption(workersOption())
    .option('--json', 'print the summary as JSON')
    .addHelpText(
      'after',
      '\nSIGINT/SIGTERM pauses: nothing is lost, `qtune experiment resume NAME` goes on.\n' +
        'Exit codes: 0 done or stopped, 1 every trial failed, 2 bad spec, 3 broker unavailable, 130 paused.',
    )
    .action(
      action(async (file: string, opts: RunOptions, cmd: Command) =>
        runExperiment(cmd, opts, { spec: loadExperimentSpec(file) }),
      ),
    );

  experiment
    .command('resume')
    .description('go on with an experiment after a crash, an interruption or a stop')
    .argument('<name>', 'experiment name')
    .addOption(workersOption())
    .option('--json', 'print the summary as JSON')
    .addHelpText('after', '\nExit codes as for `experiment run`, and 4 unknown experiment.')
    .action(
      action(async (name: string, opts: RunOptions, cmd: Command) =>
        runExperiment(cmd, opts, { resume: name }),
      ),
    );

  experiment
    .command('status')
    .description('progress of one experiment, or a list of all')
    .argument('[name]', 'experiment name')
    .option('--json', 'print JSON')
    .action(
      action(async (name: string | undefined, opts: { json?: boolean }, cmd: Command) => {
        if (name !== undefined && !storeExists(cmd)) throw new NotFoundError('experiment', name);
        const rows: Awaited<ReturnType<typeof statusOf>>[] = [];
        if (storeExists(cmd)) {
          await withStore(cmd, async (store) => {
            const names =
              name !== undefined ? [name] : (await store.listExperiments()).map((e) => e.name);
            for (const n of names) rows.push(await statusOf(store, n));
          });
        }
        if (opts.json) {
          process.stdout.write(JSON.stringify(name !== undefined ? rows[0] : rows) + '\n');
          return;
        }
        if (rows.length === 0) {
          process.stdout.write('no experiments\n');
          return;
        }
        process.stdout.write(
          table([
            [
              'experiment',
              'status',
              'finished',
              'running',
              'pruned',
              'failed',
              'best',
              'trials/min',
            ],
            ...rows.map((r) => [
              r.name,
              r.status,
              `${r.finished}/${r.maxTrials}`,
              r.running,
              r.pruned,
              r.failed,
              fmt(r.best?.value),
              r.trialsPerMinute,
            ]),
          ]) + '\n',
        );
        if (name !== undefined && rows[0]?.best) {
          process.stdout.write(
            `best: trial ${rows[0].best.number} (${formatParams(rows[0].best.params)})\n`,
          );
        }
      }),
    );

  experiment
    .command('best')
    .description('the best finished trial: its value and parameters')
    .argument('<name>', 'experiment name')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      '\nExit codes: 0 found, 1 no trial has completed yet, 4 unknown experiment.',
    )
    .action(
      action(async (name: string, opts: { json?: boolean }, cmd: Command) =>
        withExperimentStore(cmd, name, async (store) => {
          const { spec } = await experimentOf(store, name);
          const best = bestOf(await store.listTrials(name), spec);
          if (!best) {
            process.stderr.write(`qtune: experiment "${name}" has no complete trial yet\n`);
            return ExitCode.Failure;
          }
          if (opts.json) process.stdout.write(JSON.stringify(trialRow(best)) + '\n');
          else {
            process.stdout.write(
              `trial ${best.number}: ${spec.objective.metric} = ${fmt(best.value)}\n` +
                Object.entries(best.params)
                  .map(([k, v]) => `  ${k}: ${String(v)}`)
                  .join('\n') +
                '\n',
            );
          }
          return ExitCode.Ok;
        }),
      ),
    );

  experiment
    .command('trials')
    .description('every trial of an experiment: status, value, parameters')
    .argument('<name>', 'experiment name')
    .option('--json', 'print a JSON array')
    .addOption(
      new Option('--format <format>', 'output format')
        .choices(['table', 'json', 'csv'])
        .default('table'),
    )
    .action(
      action(async (name: string, opts: { json?: boolean; format: string }, cmd: Command) =>
        withExperimentStore(cmd, name, async (store) => {
          const { spec } = await experimentOf(store, name);
          const trials = await store.listTrials(name);
          const format = opts.json ? 'json' : opts.format;
          if (format === 'json') process.stdout.write(JSON.stringify(trials.map(trialRow)) + '\n');
          else if (format === 'csv') process.stdout.write(trialsCsv(trials, spec));
          else {
            process.stdout.write(
              table([
                ['trial', 'status', spec.objective.metric, 'step', 'host', 'params'],
                ...trials.map((t) => [
                  String(t.number),
                  t.status,
                  fmt(t.value),
                  t.step ?? '-',
                  t.worker?.host ?? '-',
                  formatParams(t.params),
                ]),
              ]) + '\n',
            );
          }
        }),
      ),
    );

  experiment
    .command('export')
    .description('the whole experiment: spec, trials and their intermediate reports')
    .argument('<name>', 'experiment name')
    .option('--json', 'JSON document (the default)')
    .addOption(
      new Option('--format <format>', 'output format').choices(['json', 'csv']).default('json'),
    )
    .action(
      action(async (name: string, opts: { json?: boolean; format: string }, cmd: Command) =>
        withExperimentStore(cmd, name, async (store) => {
          const { exp, spec } = await experimentOf(store, name);
          const trials = await store.listTrials(name);
          if (!opts.json && opts.format === 'csv') {
            process.stdout.write(trialsCsv(trials, spec));
            return;
          }
          const rows = [];
          for (const t of trials)
            rows.push({ ...trialRow(t), reports: await store.reports(name, t.number) });
          process.stdout.write(
            JSON.stringify({
              experiment: name,
              status: exp.status,
              spec,
              createdAt: exp.createdAt,
              trials: rows,
            }) + '\n',
          );
        }),
      ),
    );

  experiment
    .command('stop')
    .description('stop an experiment: no new trials; running ones stop at their next report')
    .argument('<name>', 'experiment name')
    .option('--wait', 'wait until the scheduler has stopped')
    .addOption(
      new Option('--timeout <duration>', 'longest wait with --wait')
        .argParser(parseDuration)
        .default(60_000, '60s'),
    )
    .addHelpText(
      'after',
      '\nA stopped experiment can be resumed. Exit codes: 0 ok, 1 not stopped within --timeout\n' +
        '(is its scheduler running? the request stays for the next one), 4 unknown experiment.',
    )
    .action(
      action(async (name: string, opts: { wait?: boolean; timeout: number }, cmd: Command) =>
        withExperimentStore(cmd, name, async (store) => {
          const { exp } = await experimentOf(store, name);
          if (exp.status === 'done' || exp.status === 'stopped') {
            process.stdout.write(`experiment ${name} is already ${exp.status}\n`);
            return;
          }
          await store.setExperimentStatus(name, 'stopping');
          if (opts.wait) {
            const until = Date.now() + opts.timeout;
            for (;;) {
              const status = await store.experimentStatus(name);
              if (status !== 'stopping') break;
              if (Date.now() >= until) {
                process.stderr.write(
                  `qtune: experiment "${name}" did not stop within ${opts.timeout} ms; is its scheduler running? The stop request stays.\n`,
                );
                return ExitCode.Failure;
              }
              await sleep(200);
            }
          }
          process.stdout.write(`experiment ${name}: ${opts.wait ? 'stopped' : 'stop requested'}\n`);
          return ExitCode.Ok;
        }),
      ),
    );

  experiment
    .command('delete')
    .description(
      'delete an experiment: its trials, reports and history in the store, and its queues on the broker',
    )
    .argument('<name>', 'experiment name')
    .option('--force', 'delete a running or stopping experiment too (its scheduler must be gone)')
    .option('--json', 'print what was deleted as JSON')
    .addHelpText(
      'after',
      `\nDeletes the queues ${experimentQueues('NAME').trials}, .results, .reports, .dead and their\n` +
        'dead-letter queues, then the experiment in the store. A running or stopping experiment is\n' +
        'refused unless --force: stop it first with `qtune experiment stop NAME --wait`.\n' +
        'Exit codes: 0 deleted, 2 running or stopping (without --force), 3 broker unavailable,\n' +
        '4 unknown experiment.',
    )
    .action(
      action(async (name: string, opts: { force?: boolean; json?: boolean }, cmd: Command) =>
        withExperimentStore(cmd, name, async (store) => {
          const ctx = contextOf(cmd);
          // Checked before the broker is opened: an unknown or running experiment touches nothing.
          const exp = await findExperiment(store, name);
          assertDeletable(exp, { force: opts.force === true });
          const target = parseBrokerUrl(ctx.globals.broker);
          // An embedded broker file that does not exist holds no queue: it is not created.
          const broker =
            target.kind === 'embedded' && !existsSync(target.location)
              ? undefined
              : await ctx.openBroker();
          let deleted;
          try {
            deleted = await deleteExperiment(store, broker, name, { force: opts.force === true });
          } finally {
            await broker?.close();
          }
          rmSync(join(storeDir(cmd), 'experiments', `${name}.spec.json`), { force: true });
          if (opts.json) process.stdout.write(JSON.stringify(deleted) + '\n');
          else {
            process.stdout.write(
              `deleted experiment ${name} (${deleted.status}, ${deleted.trials} trials, ${deleted.queues.length} queues)\n`,
            );
          }
        }),
      ),
    );

  experiment
    .command('schema')
    .description('print the JSON Schema of experiment spec files (for editors)')
    .action(
      action(async () => {
        process.stdout.write(JSON.stringify(experimentSpecJsonSchema(), null, 2) + '\n');
      }),
    );

  return experiment;
}
