import { Command, Option } from 'commander';
import { waitForIdle } from '../../patterns/idle.js';
import { DEFAULT_BATCH_ROWS, Sink } from '../../sink/sink.js';
import { action, contextOf } from '../context.js';
import { connectTimeoutOption, intAtLeast } from '../options.js';

interface SinkCliOptions {
  table?: string;
  key?: string[];
  batch: number;
  follow?: boolean;
  json?: boolean;
  connectTimeout?: number;
}

/** Seconds between progress lines. */
const PROGRESS_EVERY_MS = 5000;

export function sinkCommand(): Command {
  return new Command('sink')
    .description("store a queue's results in a database table, exactly one row per item")
    .argument('<queue>', 'task queue whose results to store (reads <queue>.results)')
    .option('--table <name>', 'result table (default: the queue name)')
    .option(
      '--key <fields...>',
      "fields of each result's value that make its row id (default: the task's idempotency key)",
    )
    .addOption(
      new Option('--batch <n>', 'rows per database transaction')
        .argParser(intAtLeast(1))
        .default(DEFAULT_BATCH_ROWS),
    )
    .option('--follow', 'keep storing new results until SIGTERM/SIGINT')
    .option('--json', 'print the summary as JSON')
    .addOption(connectTimeoutOption())
    .addHelpText(
      'after',
      '\nEach result is upserted by its row id, so a redelivered or re-run result updates its row.\n' +
        'Results are acknowledged only after their batch is committed.\n' +
        'Store: --store URL or QTUNE_STORE (SQLite file, default .qtune/store.db; postgres://...).\n' +
        'Without --follow the command exits once the result queue is empty and nothing is in\n' +
        'flight (results leased by a sink that died come back when their lease ends).\n' +
        'Exit codes: 0 done, 2 bad input, 3 broker or store unavailable.',
    )
    .action(
      action(async (queue: string, opts: SinkCliOptions, cmd: Command) => {
        const ctx = contextOf(cmd);
        const store = await ctx.openStore();
        const broker = await ctx
          .openBrokerWaiting(
            opts.connectTimeout === undefined ? {} : { timeoutMs: opts.connectTimeout },
          )
          .catch(async (err: unknown) => {
            await store.close();
            throw err;
          });
        const stop = new AbortController();
        const onSignal = (): void => stop.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        let sink: Sink | undefined;
        const started = Date.now();
        try {
          sink = await Sink.start({
            broker,
            store,
            queue,
            table: opts.table ?? queue,
            batchSize: opts.batch,
            ...(opts.key && { keyFields: opts.key }),
          });
          const s = sink;
          s.on('invalid', ({ messageId, reason }) =>
            ctx.logger.warn(
              { messageId },
              `dead-lettered a message that is not a result: ${reason}`,
            ),
          );
          s.on('error', (err) => ctx.logger.error({ err: err.message }, 'sink error'));
          let lastStored = 0;
          const progress = setInterval(() => {
            const rate = ((s.stats.stored - lastStored) * 1000) / PROGRESS_EVERY_MS;
            lastStored = s.stats.stored;
            ctx.logger.info(
              { table: s.table, stored: s.stats.stored, rate: Math.round(rate) },
              `stored ${s.stats.stored} result(s) in "${s.table}" (${Math.round(rate)}/s)`,
            );
          }, PROGRESS_EVERY_MS);
          progress.unref();
          try {
            if (opts.follow) {
              await new Promise<void>((r) => stop.signal.addEventListener('abort', () => r()));
            } else {
              await waitForIdle(broker, s.source, () => s.lastActivity, {
                signal: stop.signal,
                inFlight: true,
              });
            }
          } finally {
            clearInterval(progress);
          }
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          await sink?.stop();
          await broker.close();
          await store.close();
        }
        const seconds = (Date.now() - started) / 1000;
        const summary = { queue, table: sink.table, ...sink.stats, seconds };
        if (opts.json) process.stdout.write(JSON.stringify(summary) + '\n');
        else
          process.stdout.write(
            `stored ${sink.stats.stored} result(s) in table "${sink.table}": ` +
              `${sink.stats.inserted} new, ${sink.stats.updated} updated, ` +
              `${sink.stats.invalid} invalid (dead-lettered)\n`,
          );
      }),
    );
}
