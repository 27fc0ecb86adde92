import { Command, Option } from 'commander';
import { stringify } from 'csv-stringify/sync';
import { ackEach, type Consumer, type Delivery } from '../../broker/contract.js';
import { resultQueueOf } from '../../patterns/work-queue.js';
import { decode } from '../../protocol/codec.js';
import { DecodeError } from '../../protocol/errors.js';
import type { TaskResult } from '../../protocol/result.js';
import { action, contextOf } from '../context.js';
import { DeliveryPrinter } from '../delivery-printer.js';
import { CSV_OPTIONS } from '../format.js';
import { waitForIdle } from '../../patterns/idle.js';

interface ResultsOptions {
  follow?: boolean;
  format: 'jsonl' | 'csv';
  limit?: number;
}

const CSV_COLUMNS = [
  'taskId',
  'key',
  'task',
  'ok',
  'value',
  'errorCode',
  'errorMessage',
  'host',
  'pid',
  'gpu',
  'startedAt',
  'finishedAt',
  'durationMs',
  'attempt',
] as const;

function csvRow(r: TaskResult): unknown[] {
  return [
    r.taskId,
    r.key ?? '',
    r.task ?? '',
    r.ok,
    r.value === undefined ? '' : JSON.stringify(r.value),
    r.error?.code ?? '',
    r.error?.message ?? '',
    r.worker?.host ?? '',
    r.worker?.pid ?? '',
    r.worker?.gpus?.map((g) => g.name).join('; ') ?? '',
    r.startedAt,
    r.finishedAt,
    r.durationMs,
    r.attempt,
  ];
}

/**
 * Results held from the broker at once: the printer writes what arrived in one turn as one
 * chunk, so a larger window means fewer, larger writes and acks.
 */
const PREFETCH = 2_000;

function renderJsonl(results: TaskResult[]): string {
  let text = '';
  for (const r of results) text += JSON.stringify(r) + '\n';
  return text;
}

function renderCsv(results: TaskResult[]): string {
  return stringify(results.map(csvRow), CSV_OPTIONS);
}

export function resultsCommand(): Command {
  return new Command('results')
    .description("print the results of a queue's tasks, one per line; reading acknowledges them")
    .argument('<queue>', 'task queue whose results to read (reads <queue>.results)')
    .option('--follow', 'keep waiting for new results until interrupted')
    .addOption(
      new Option('--format <format>', 'output format').choices(['jsonl', 'csv']).default('jsonl'),
    )
    .addHelpText(
      'after',
      '\nEach result carries its task id, idempotency key, outcome, worker host and timings.\n' +
        'Without --follow the command exits once the result queue is empty.\n' +
        'Exit codes: 0 done, 3 broker unavailable.',
    )
    .action(
      action(async (queue: string, opts: ResultsOptions, cmd: Command) => {
        const ctx = contextOf(cmd);
        const broker = await ctx.openBroker();
        const source = resultQueueOf(queue);
        let count = 0;
        let lastActivity = Date.now();
        if (opts.format === 'csv') process.stdout.write(stringify([[...CSV_COLUMNS]], CSV_OPTIONS));
        let consumer: Consumer | undefined = undefined;
        const printer = new DeliveryPrinter<TaskResult>({
          out: process.stdout,
          render: opts.format === 'csv' ? renderCsv : renderJsonl,
          ack: (deliveries) => (consumer ? consumer.ackAll(deliveries) : ackEach(deliveries)),
        });
        const onDelivery = async (d: Delivery) => {
          lastActivity = Date.now();
          let result: TaskResult;
          try {
            result = decode(d.body, { source: `queue "${source}"`, messageId: d.id })
              .payload as TaskResult;
          } catch (err) {
            const reason = err instanceof DecodeError ? `${err.code}: ${err.message}` : String(err);
            ctx.logger.warn(
              { queue: source, id: d.id },
              `dead-lettering unreadable result: ${reason}`,
            );
            await d.deadLetter(reason);
            return;
          }
          await printer.print(result, d);
          count++;
        };
        await broker.declareQueue(source);
        consumer = await broker.consume(source, onDelivery, { prefetch: PREFETCH });
        const stop = new AbortController();
        const onSignal = () => stop.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        try {
          if (opts.follow) {
            await new Promise<void>((r) => stop.signal.addEventListener('abort', () => r()));
          } else {
            await waitForIdle(broker, source, () => lastActivity, { signal: stop.signal });
          }
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          await consumer.cancel();
          await broker.close();
        }
        ctx.logger.debug({ queue: source, count }, 'results read');
      }),
    );
}
