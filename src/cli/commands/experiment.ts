import { existsSync, rmSync } from 'node:fs';
import { Command, Option, type CommanderError } from 'commander';
import { stringify } from 'csv-stringify/sync';
import { parseBrokerUrl } from '../../broker/open.js';
import { experimentBest } from '../../experiment/best.js';
import { assertDeletable, deleteExperiment } from '../../experiment/delete.js';
import { exportExperiment } from '../../experiment/export.js';
import { experimentProgress, type ExperimentProgress } from '../../experiment/status.js';
import { requestStop, waitForStop } from '../../experiment/stop.js';
import { experimentTrials, trialRow } from '../../experiment/trials.js';
import { NotFoundError } from '../../protocol/errors.js';
import { experimentQueues } from '../../protocol/trial.js';
import {
  experimentSpecJsonSchema,
  loadExperimentSpec,
  type ExperimentSpec,
} from '../../scheduler/spec.js';
import { findExperiment } from '../../scheduler/stored.js';
import type { ExperimentStore, TrialRecord } from '../../store/experiments.js';
import { action, contextOf } from '../context.js';
import { ExitCode } from '../exit-codes.js';
import { CSV_OPTIONS, formatMetric, formatParams, table } from '../format.js';
import { parseDuration } from '../options.js';
import {
  runExperiment,
  specCopyPath,
  storeExists,
  workersOption,
  type RunOptions,
} from './experiment-run.js';

async function withStore<T>(cmd: Command, fn: (store: ExperimentStore) => Promise<T>): Promise<T> {
  const store = await contextOf(cmd).openStore();
  try {
    return await fn(store.experiments);
  } finally {
    await store.close();
  }
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
        const rows: ExperimentProgress[] = [];
        if (storeExists(cmd)) {
          await withStore(cmd, async (store) => {
            const names =
              name !== undefined ? [name] : (await store.listExperiments()).map((e) => e.name);
            for (const n of names) rows.push(await experimentProgress(store, n));
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
              formatMetric(r.best?.value),
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
          const { spec, best } = await experimentBest(store, name);
          if (!best) {
            process.stderr.write(`qtune: experiment "${name}" has no complete trial yet\n`);
            return ExitCode.Failure;
          }
          if (opts.json) process.stdout.write(JSON.stringify(trialRow(best)) + '\n');
          else {
            process.stdout.write(
              `trial ${best.number}: ${spec.objective.metric} = ${formatMetric(best.value)}\n` +
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
          const { spec, trials } = await experimentTrials(store, name);
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
                  formatMetric(t.value),
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
          if (!opts.json && opts.format === 'csv') {
            const { spec, trials } = await experimentTrials(store, name);
            process.stdout.write(trialsCsv(trials, spec));
            return;
          }
          process.stdout.write(JSON.stringify(await exportExperiment(store, name)) + '\n');
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
          const stop = await requestStop(store, name);
          if (!stop.requested) {
            process.stdout.write(`experiment ${name} is already ${stop.status}\n`);
            return;
          }
          if (opts.wait && !(await waitForStop(store, name, { timeoutMs: opts.timeout }))) {
            process.stderr.write(
              `qtune: experiment "${name}" did not stop within ${opts.timeout} ms; is its scheduler running? The stop request stays.\n`,
            );
            return ExitCode.Failure;
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
          rmSync(specCopyPath(cmd, name), { force: true });
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
