import { Command, Option } from 'commander';
import { stringify } from 'csv-stringify/sync';
import { iterateItems, type InputItem } from '../../job/input.js';
import { cancelJob, waitForInFlight } from '../../job/cancel.js';
import { exportJob, jobItemFields, type ExportedItem } from '../../job/export.js';
import { retryFailed } from '../../job/retry.js';
import { getJobOrThrow, jobStatus, type JobStatus } from '../../job/status.js';
import { submitJob, type ItemSource, type SubmitItem } from '../../job/submit.js';
import { loadTemplate } from '../../job/template.js';
import { action, contextOf } from '../context.js';
import { CSV_OPTIONS, table } from '../format.js';
import { parseDuration } from '../options.js';

interface SubmitOptions {
  input: string;
  key?: string[];
  template?: string;
  queue?: string;
  table?: string;
  lease?: number;
  json?: boolean;
}

function duration(seconds: number | null): string {
  if (seconds === null) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

const n = (x: number): string => x.toLocaleString('en-US');

/** The human view of `job status`. */
export function formatJobStatus(s: JobStatus): string {
  const pct = s.items > 0 ? ` (${((100 * (s.done + s.failed)) / s.items).toFixed(1)}%)` : '';
  const lines = [
    `job ${s.name}   queue ${s.queue}   table ${s.table}`,
    `items ${n(s.items)}   done ${n(s.done)}   failed ${n(s.failed)}   remaining ${n(s.remaining)}${pct}`,
    `queued ${n(s.queued)}   in flight ${n(s.inFlight)}   dead-lettered ${n(s.deadLettered)}   ` +
      `results not yet stored ${n(s.resultsWaiting)}` +
      (s.unpublished > 0 ? `   not yet published ${n(s.unpublished)}` : ''),
    `rate ${s.rate.toFixed(1)} items/s (last minute)   ETA ${duration(s.etaSeconds)}`,
  ];
  if (s.cost) {
    const per = s.cost.perThousand === null ? '—' : s.cost.perThousand.toFixed(4);
    lines.push(`cost ${per} per 1,000 items   (${s.cost.total.toFixed(4)} so far)`);
  }
  if (s.workers.length > 0) {
    lines.push('');
    lines.push(
      table([
        ['worker', 'host', 'gpu', 'done', 'failed', 'items/s', 'price/h'],
        ...s.workers.map((w) => [
          w.workerId,
          w.host,
          w.gpu ?? '-',
          n(w.done),
          n(w.failed),
          w.rate.toFixed(1),
          w.pricePerHour === undefined ? '-' : String(w.pricePerHour),
        ]),
      ]),
    );
  }
  return lines.join('\n') + '\n';
}

/**
 * The items of `path` for submitJob, which reads them twice: a file is read again each time,
 * stdin (`-`) is read once and held.
 */
async function itemSource(path: string): Promise<ItemSource> {
  const source = path === '-' ? 'stdin' : `"${path}"`;
  const tag = ({ line, item }: InputItem): SubmitItem => ({
    item,
    where: `${source} line ${line}`,
  });
  if (path !== '-') {
    return async function* () {
      for await (const it of iterateItems(path)) yield tag(it);
    };
  }
  const items: SubmitItem[] = [];
  for await (const it of iterateItems(path)) items.push(tag(it));
  return () => items;
}

const EXPORT_COLUMNS = [
  'id',
  'status',
  'value',
  'error_code',
  'error_message',
  'host',
  'gpu',
  'attempt',
  'duration_ms',
  'finished_at',
] as const;

function csvCell(v: unknown): unknown {
  if (v === undefined || v === null) return '';
  return typeof v === 'object' ? JSON.stringify(v) : v;
}

function csvRow(e: ExportedItem, fields: readonly string[]): unknown[] {
  return [
    e.id,
    e.status,
    ...fields.map((f) => csvCell(e.item[f])),
    csvCell(e.value),
    e.error?.code ?? '',
    e.error?.message ?? '',
    e.host ?? '',
    e.gpu ?? '',
    e.attempt ?? '',
    e.durationMs ?? '',
    e.finishedAt ?? '',
  ];
}

async function write(line: string): Promise<void> {
  if (!process.stdout.write(line)) await new Promise((r) => process.stdout.once('drain', r));
}

export function jobCommand(): Command {
  const job = new Command('job')
    .description('batch jobs: a dataset of items, one task each, results in a table exactly once')
    .addHelpText(
      'after',
      '\nA job NAME uses queue NAME and result table NAME; run workers with `qtune worker NAME ...`\n' +
        'and store their results with `qtune sink NAME`. Store: --store URL or QTUNE_STORE.',
    );

  job
    .command('submit')
    .description(
      'publish one task per item of a JSONL or CSV file; items already submitted are skipped',
    )
    .argument('<name>', 'job name (also its queue and result table)')
    .requiredOption(
      '--input <file>',
      'items: JSON Lines, or CSV/TSV with a header row (- for stdin)',
    )
    .option('--key <fields...>', 'fields whose values identify an item (default: the whole item)')
    .option('--template <file>', "fill this template from each item's fields to make its payload")
    .option('--queue <name>', 'task queue (default: the job name)')
    .option('--table <name>', 'result table (default: the job name)')
    .addOption(
      new Option(
        '--lease <duration>',
        "when the queue is new: how soon a dead worker's tasks come back (default: 30s)",
      ).argParser(parseDuration),
    )
    .option('--json', 'print the summary as JSON')
    .addHelpText(
      'after',
      '\nA malformed line or row rejects the whole file, naming its line; nothing is submitted.\n' +
        'Each item is keyed by a hash of its key fields: submitting it again adds nothing.\n' +
        'Exit codes: 0 submitted, 2 bad input, 3 broker or store unavailable.',
    )
    .action(
      action(async (name: string, opts: SubmitOptions, cmd: Command) => {
        const ctx = contextOf(cmd);
        const template =
          opts.template === undefined ? undefined : await loadTemplate(opts.template);
        const items = await itemSource(opts.input);
        const store = await ctx.openStore();
        try {
          const broker = await ctx.openBroker();
          try {
            let last = 0;
            const r = await submitJob({
              broker,
              store,
              name,
              items,
              ...(opts.key && { keyFields: opts.key }),
              ...(template && { render: (item) => template.render(item) }),
              ...(opts.queue !== undefined && { queue: opts.queue }),
              ...(opts.table !== undefined && { table: opts.table }),
              ...(opts.lease !== undefined && { leaseMs: opts.lease }),
              onProgress: (published, total) => {
                if (Date.now() - last < 2000 && published < total) return;
                last = Date.now();
                ctx.logger.info({ published, total }, `published ${published} of ${total} task(s)`);
              },
            });
            if (opts.json) {
              process.stdout.write(
                JSON.stringify({
                  job: r.job.name,
                  queue: r.job.queue,
                  table: r.job.table,
                  items: r.items,
                  added: r.added,
                  published: r.published,
                }) + '\n',
              );
            } else {
              process.stdout.write(
                `job ${r.job.name}: ${r.items} item(s) read, ${r.added} new, ${r.published} task(s) published to queue "${r.job.queue}"\n` +
                  `store the results with: qtune sink ${r.job.queue} --table ${r.job.table} --follow\n`,
              );
            }
          } finally {
            await broker.close();
          }
        } finally {
          await store.close();
        }
      }),
    );

  job
    .command('status')
    .description('progress of a job: done, failed, in flight, queued, rate, ETA, workers, cost')
    .argument('<name>', 'job name')
    .option('--json', 'print one JSON document')
    .addOption(
      new Option('--watch <interval>', 'print again every interval until interrupted').argParser(
        parseDuration,
      ),
    )
    .addHelpText(
      'after',
      '\nExit codes: 0 ok, 3 broker or store unavailable, 4 no such job, store or broker file.',
    )
    .action(
      action(async (name: string, opts: { json?: boolean; watch?: number }, cmd: Command) => {
        const ctx = contextOf(cmd);
        const store = await ctx.openStore({ create: false });
        const broker = await ctx.openBroker({ create: false }).catch(async (err: unknown) => {
          await store.close();
          throw err;
        });
        let stop = false;
        const onSignal = (): void => {
          stop = true;
        };
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        try {
          do {
            const s = await jobStatus(broker, store, name);
            process.stdout.write(opts.json ? JSON.stringify(s) + '\n' : formatJobStatus(s));
            if (opts.watch === undefined) break;
            const until = Date.now() + opts.watch;
            while (!stop && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
            if (!opts.json && !stop) process.stdout.write('\n');
          } while (!stop);
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          await broker.close();
          await store.close();
        }
      }),
    );

  job
    .command('export')
    .description('every item of a job next to its result, in submission order')
    .argument('<name>', 'job name')
    .addOption(
      new Option('--format <format>', 'output format').choices(['jsonl', 'csv']).default('jsonl'),
    )
    .addOption(
      new Option('--status <status>', 'only items in this state').choices([
        'done',
        'failed',
        'pending',
      ]),
    )
    .addHelpText(
      'after',
      '\nCSV columns: id, status, the item fields, value (JSON), error, host, gpu, attempt,\n' +
        'duration_ms, finished_at.\n' +
        'Exit codes: 0 ok, 3 store unavailable, 4 no such job or store file.',
    )
    .action(
      action(
        async (
          name: string,
          opts: { format: 'jsonl' | 'csv'; status?: ExportedItem['status'] },
          cmd: Command,
        ) => {
          const store = await contextOf(cmd).openStore({ create: false });
          try {
            await getJobOrThrow(store, name);
            const fields = opts.format === 'csv' ? await jobItemFields(store, name) : [];
            if (opts.format === 'csv')
              await write(
                stringify([['id', 'status', ...fields, ...EXPORT_COLUMNS.slice(2)]], CSV_OPTIONS),
              );
            const options = opts.status === undefined ? {} : { status: opts.status };
            for await (const e of exportJob(store, name, options)) {
              await write(
                opts.format === 'csv'
                  ? stringify([csvRow(e, fields)], CSV_OPTIONS)
                  : JSON.stringify(e) + '\n',
              );
            }
          } finally {
            await store.close();
          }
        },
      ),
    );

  job
    .command('retry-failed')
    .description("run a job's failed items again: requeue its dead letters, republish failed rows")
    .argument('<name>', 'job name')
    .option('--json', 'print the counts as JSON')
    .addHelpText(
      'after',
      '\nExit codes: 0 ok, 3 broker or store unavailable, 4 no such job, store or broker file.',
    )
    .action(
      action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
        const ctx = contextOf(cmd);
        const store = await ctx.openStore({ create: false });
        const broker = await ctx.openBroker({ create: false }).catch(async (err: unknown) => {
          await store.close();
          throw err;
        });
        try {
          const r = await retryFailed(broker, store, name);
          process.stdout.write(
            opts.json
              ? JSON.stringify({ job: name, ...r }) + '\n'
              : `job ${name}: ${r.requeued} dead letter(s) requeued, ${r.republished} failed item(s) republished\n`,
          );
        } finally {
          await broker.close();
          await store.close();
        }
      }),
    );
  job
    .command('cancel')
    .description('cancel a job: its waiting tasks are removed from its queue and never run')
    .argument('<name>', 'job name')
    .option('--now', 'do not wait for the tasks already in flight')
    .option('--json', 'print the counts as JSON')
    .addHelpText(
      'after',
      '\nWithout --now the command waits until the tasks that workers hold finish; their results\n' +
        'are stored as usual. With --now it returns at once and those tasks still finish.\n' +
        'Cancelled items stay in the job as remaining; dead letters stay for retry-failed.\n' +
        'The whole queue is purged: a queue shared with other work (--queue) loses its waiting\n' +
        'tasks too.\n' +
        'Exit codes: 0 cancelled, 3 broker or store unavailable, 4 no such job, store or broker file.',
    )
    .action(
      action(async (name: string, opts: { now?: boolean; json?: boolean }, cmd: Command) => {
        const ctx = contextOf(cmd);
        const store = await ctx.openStore({ create: false });
        const broker = await ctx.openBroker({ create: false }).catch(async (err: unknown) => {
          await store.close();
          throw err;
        });
        const stop = new AbortController();
        const onSignal = (): void => stop.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        try {
          const r = await cancelJob(broker, store, name);
          if (!opts.now && r.inFlight > 0) {
            let last = 0;
            await waitForInFlight(broker, r.queue, {
              signal: stop.signal,
              onWait: (inFlight) => {
                if (Date.now() - last < 2000) return;
                last = Date.now();
                ctx.logger.info(
                  { job: name, inFlight },
                  `waiting for ${inFlight} task(s) in flight`,
                );
              },
            });
          }
          process.stdout.write(
            opts.json
              ? JSON.stringify({ ...r, waited: !opts.now && !stop.signal.aborted }) + '\n'
              : `job ${name}: ${r.removed} waiting task(s) removed from queue "${r.queue}", ` +
                  `${r.inFlight} in flight ${opts.now || stop.signal.aborted ? 'left to finish' : 'finished'}\n`,
          );
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          await broker.close();
          await store.close();
        }
      }),
    );
  return job;
}
