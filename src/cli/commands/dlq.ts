import { Command, Option } from 'commander';
import {
  DEAD_LETTER_DELIVERIES_HEADER,
  DEAD_LETTER_QUEUE_HEADER,
  DEAD_LETTER_REASON_HEADER,
  deadLetterQueueOf,
  type Delivery,
} from '../../broker/contract.js';
import type { Headers } from '../../protocol/envelope.js';
import { action, contextOf } from '../context.js';
import { waitForIdle } from '../idle.js';
import { intAtLeast } from '../options.js';

interface DlqOptions {
  requeue?: boolean;
  json?: boolean;
  limit: number;
}

interface DeadLetterView {
  id: string;
  queue: string;
  reason: string;
  deliveries: number | null;
  body: string;
}

function view(d: Delivery, queue: string): DeadLetterView {
  const deliveries = d.headers[DEAD_LETTER_DELIVERIES_HEADER];
  return {
    id: d.id,
    queue: String(d.headers[DEAD_LETTER_QUEUE_HEADER] ?? queue),
    reason: String(d.headers[DEAD_LETTER_REASON_HEADER] ?? 'unknown'),
    deliveries: deliveries === undefined || deliveries === null ? null : Number(deliveries),
    body: d.body.toString('utf8'),
  };
}

function withoutDeadHeaders(headers: Headers): Headers {
  const out: Headers = {};
  for (const [k, v] of Object.entries(headers)) {
    if (
      k !== DEAD_LETTER_REASON_HEADER &&
      k !== DEAD_LETTER_QUEUE_HEADER &&
      k !== DEAD_LETTER_DELIVERIES_HEADER
    ) {
      out[k] = v;
    }
  }
  return out;
}

export function dlqCommand(): Command {
  return new Command('dlq')
    .description("list a queue's dead letters with their reasons, or put them back")
    .argument('<queue>', 'task queue whose dead letters to show (reads <queue>.dead)')
    .option('--requeue', 'publish every dead letter back to its queue, then remove it')
    .option('--json', 'one JSON object per dead letter')
    .addOption(
      new Option('--limit <n>', 'most dead letters to list').argParser(intAtLeast(1)).default(1000),
    )
    .addHelpText('after', '\nExit codes: 0 ok, 3 broker unavailable.')
    .action(
      action(async (queue: string, opts: DlqOptions, cmd: Command) => {
        const ctx = contextOf(cmd);
        const broker = await ctx.openBroker();
        const dead = deadLetterQueueOf(queue);
        await broker.declareQueue(dead);
        const held: Delivery[] = [];
        // Requeue only what was dead when we started: a poison message that fails again comes
        // straight back here and must not be requeued in a loop.
        const initial = (await broker.stats(dead)).ready;
        const seen = new Set<string>();
        let requeued = 0;
        let lastActivity = Date.now();
        const consumer = await broker.consume(
          dead,
          async (d) => {
            lastActivity = Date.now();
            if (opts.requeue && requeued < initial && !seen.has(d.id)) {
              seen.add(d.id);
              const target = String(d.headers[DEAD_LETTER_QUEUE_HEADER] ?? queue);
              await broker.publish(target, [
                {
                  id: d.id,
                  body: d.body,
                  priority: d.priority,
                  headers: withoutDeadHeaders(d.headers),
                },
              ]);
              await d.ack();
              requeued++;
              if (!opts.json) process.stdout.write(`requeued ${d.id} to "${target}"\n`);
            } else {
              held.push(d);
            }
          },
          { prefetch: opts.requeue ? 200 : opts.limit },
        );
        try {
          await waitForIdle(broker, dead, () => lastActivity, {
            enough: () => (opts.requeue ? requeued >= initial : held.length >= opts.limit),
          });
        } finally {
          await consumer.cancel();
        }
        const views = held.map((d) => view(d, queue));
        await Promise.all(held.map((d) => d.release()));
        const total = (await broker.stats(dead)).ready;
        await broker.close();
        if (opts.requeue) {
          if (opts.json) process.stdout.write(JSON.stringify({ queue, requeued }) + '\n');
          else process.stdout.write(`requeued ${requeued} dead letter(s) of "${queue}"\n`);
          return;
        }
        if (opts.json) {
          for (const v of views) process.stdout.write(JSON.stringify(v) + '\n');
          return;
        }
        if (views.length === 0) {
          process.stdout.write(`no dead letters in "${dead}"\n`);
          return;
        }
        for (const v of views) {
          const body = v.body.length > 120 ? v.body.slice(0, 117) + '...' : v.body;
          process.stdout.write(
            `${v.id}  deliveries=${v.deliveries ?? '?'}  ${v.reason}\n    ${body}\n`,
          );
        }
        process.stdout.write(`${views.length} of ${total} dead letter(s) in "${dead}"\n`);
      }),
    );
}
