import { Command, Option } from 'commander';
import type { Broker, QueueStats } from '../../broker/contract.js';
import { BrokerError, ErrorCode, toError } from '../../protocol/errors.js';
import { printable } from '../../protocol/names.js';
import { endpointRows, gatherWorkerReports, type WorkerReport } from '../../worker/control.js';
import { action, contextOf } from '../context.js';
import { table } from '../format.js';
import { parseDuration } from '../options.js';

interface StatusOptions {
  json?: boolean;
  wait: number;
  all?: boolean;
}

interface HostSummary {
  host: string;
  workers: number;
  done: number;
  failed: number;
  inFlight: number;
  rate: number;
  gpus: string[];
}

function byHost(reports: WorkerReport[]): HostSummary[] {
  const hosts = new Map<string, HostSummary>();
  for (const r of reports) {
    const h = hosts.get(r.worker.host) ?? {
      host: r.worker.host,
      workers: 0,
      done: 0,
      failed: 0,
      inFlight: 0,
      rate: 0,
      gpus: [],
    };
    h.workers++;
    h.done += r.done;
    h.failed += r.failed;
    h.inFlight += r.inFlight;
    h.rate += r.rate;
    for (const g of r.worker.gpus ?? []) if (!h.gpus.includes(g.name)) h.gpus.push(g.name);
    hosts.set(h.host, h);
  }
  return [...hosts.values()].sort((a, b) => a.host.localeCompare(b.host));
}

/** A queue's stats, or why they could not be read (a queue qtune cannot use, such as one made by another client). */
type QueueRow = QueueStats | { queue: string; error: string };

/** Stats of each queue; a queue whose stats fail is a row with its error, not a failed command. */
async function queueRows(broker: Broker, names: string[]): Promise<QueueRow[]> {
  const settled = await Promise.allSettled(names.map((n) => broker.stats(n)));
  return settled.map((s, i) => {
    if (s.status === 'fulfilled') return s.value;
    // The broker itself is gone: that is the command's failure (exit 3), not one queue's.
    if (s.reason instanceof BrokerError && s.reason.code === ErrorCode.BrokerUnavailable) {
      throw s.reason;
    }
    return { queue: names[i]!, error: toError(s.reason).message };
  });
}

/** Internal queues (dead letters, reply and status queues, subscriptions) are hidden by default. */
function isInternal(name: string): boolean {
  return name.endsWith('.dead') || name.startsWith('qtune.') || name.startsWith('amq.');
}

export function statusCommand(): Command {
  return new Command('status')
    .description(
      'show queues (ready, in flight, dead-lettered, consumers) and live workers per host',
    )
    .option('--json', 'print one JSON document')
    .option('--all', 'include internal queues (dead letters, reply queues, subscriptions)')
    .addOption(
      new Option('--wait <duration>', 'how long to wait for worker reports')
        .argParser(parseDuration)
        .default(500, '500ms'),
    )
    .addHelpText(
      'after',
      '\nA queue whose stats cannot be read (a name qtune refuses, made by another client) is a row\n' +
        'with its error; the other queues are shown.\nExit codes: 0 ok, 3 broker unavailable, 4 no such broker file.',
    )
    .action(
      action(async (opts: StatusOptions, cmd: Command) => {
        const ctx = contextOf(cmd);
        const broker = await ctx.openBroker({ create: false });
        let queues: QueueRow[];
        let reports: WorkerReport[];
        try {
          const names = (await broker.listQueues())
            .filter((n) => opts.all || !isInternal(n))
            .sort();
          queues = await queueRows(broker, names);
          reports = await gatherWorkerReports(broker, opts.wait);
        } finally {
          await broker.close();
        }
        const hosts = byHost(reports);
        if (opts.json) {
          process.stdout.write(JSON.stringify({ queues, hosts, workers: reports }) + '\n');
          return;
        }
        if (queues.length === 0) process.stdout.write('no queues\n');
        else {
          const broken = queues.some((q) => 'error' in q);
          // Names come from the broker, where any client may have made them: escaped.
          process.stdout.write(
            table(
              [
                ['queue', 'ready', 'delayed', 'in flight', 'dead', 'consumers'].concat(
                  broken ? ['error'] : [],
                ),
                ...queues.map((q) =>
                  'error' in q
                    ? [printable(q.queue), '-', '-', '-', '-', '-', printable(q.error)]
                    : [
                        printable(q.queue),
                        q.ready,
                        q.delayed,
                        q.inFlight,
                        q.deadLettered,
                        q.consumers,
                        ...(broken ? [''] : []),
                      ],
                ),
              ],
              [6],
            ) + '\n',
          );
        }
        process.stdout.write('\n');
        if (hosts.length === 0) process.stdout.write('no live workers answered\n');
        else {
          process.stdout.write(
            table([
              ['host', 'workers', 'done', 'failed', 'in flight', 'tasks/s', 'gpus'],
              ...hosts.map((h) => [
                printable(h.host),
                h.workers,
                h.done,
                h.failed,
                h.inFlight,
                h.rate.toFixed(1),
                printable(h.gpus.join(', ')) || '-',
              ]),
            ]) + '\n',
          );
        }
        const endpoints = endpointRows(reports);
        if (endpoints.length > 0) process.stdout.write('\n' + table(endpoints) + '\n');
      }),
    );
}
