import { Command, Option } from 'commander';
import { stringify } from 'csv-stringify/sync';
import { ackEach, type Consumer, type Delivery } from '../../broker/contract.js';
import { resultQueueOf } from '../../patterns/work-queue.js';
import { decode } from '../../protocol/codec.js';
import { DecodeError } from '../../protocol/errors.js';
import { assertName } from '../../protocol/names.js';
import type { TaskResult } from '../../protocol/result.js';
import { action, contextOf, requireQueue } from '../context.js';
import { DeliveryPrinter } from '../delivery-printer.js';
import { waitForQueue } from '../../patterns/require-queue.js';
import { CSV_OPTIONS } from '../format.js';
import { connectTimeoutOption } from '../options.js';
import { waitForIdle } from '../../patterns/idle.js';

interface ResultsOptions {
  follow?: boolean;
  format: 'jsonl' | 'csv';
  limit?: number;
  connectTimeout?: number;
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
    .addOption(connectTimeoutOption())
    .addOption(
      new Option('--format <format>', 'output format').choices(['jsonl', 'csv']).default('jsonl'),
    )
    .addHelpText(
      'after',
      '\nEach result carries its task id, idempotency key, outcome, worker host and timings.\n' +
        'Without --follow the command exits once the result queue is empty.\n' +
        'A queue that does not exist (neither <queue> nor <queue>.results) is refused, exit 4;\n' +
        'with --follow it is waited for, with a warning naming the closest existing queue.\n' +
        'With --follow, a RabbitMQ or gateway broker that cannot be reached at start is waited for\n' +
        '(--connect-timeout); without it the command fails at once, exit 3.\n' +
        'Exit codes: 0 done, 3 broker unavailable, 4 no such queue or broker file.',
    )
    .action(
      action(async (queue: string, opts: ResultsOptions, cmd: Command) => {
        assertName('queue', queue);
        const ctx = contextOf(cmd);
        const broker = opts.follow
          ? await ctx.openBrokerWaiting({
              create: false,
              ...(opts.connectTimeout !== undefined && { timeoutMs: opts.connectTimeout }),
            })
          : await ctx.openBroker({ create: false });
        const source = resultQueueOf(queue);
        let hasResults: boolean;
        const interrupted = new AbortController();
        const onEarlySignal = () => interrupted.abort();
        process.once('SIGINT', onEarlySignal);
        process.once('SIGTERM', onEarlySignal);
        try {
          // --follow waits for a queue that a worker or publish has yet to create, saying so.
          hasResults = (
            opts.follow
              ? await waitForQueue(broker, queue, [source], {
                  signal: interrupted.signal,
                  onMissing: (err) => ctx.logger.warn(`${err.message}; waiting for it to appear`),
                })
              : await requireQueue(broker, queue, [source])
          ).has(source);
        } catch (err) {
          await broker.close();
          if (interrupted.signal.aborted) return;
          throw err;
        } finally {
          process.off('SIGINT', onEarlySignal);
          process.off('SIGTERM', onEarlySignal);
        }
        if (!hasResults && !opts.follow) {
          // The task queue exists but no result was ever published: nothing to read.
          if (opts.format === 'csv')
            process.stdout.write(stringify([[...CSV_COLUMNS]], CSV_OPTIONS));
          await broker.close();
          return;
        }
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
        // Keeps the policy of an existing queue; with --follow on a task queue that has no
        // result yet, creates the result queue its workers would create.
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
