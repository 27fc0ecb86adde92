import { Command, Option } from 'commander';
import { deadLetterQueueOf, type Delivery } from '../../broker/contract.js';
import { deadLetterView, requeueDeadLetters } from '../../patterns/dead-letters.js';
import { action, contextOf, requireQueue } from '../context.js';
import { waitForIdle } from '../../patterns/idle.js';
import { intAtLeast } from '../options.js';
import { assertName, printable } from '../../protocol/names.js';

interface DlqOptions {
  requeue?: boolean;
  json?: boolean;
  limit: number;
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
    .addHelpText('after', '\nExit codes: 0 ok, 3 broker unavailable, 4 no such queue.')
    .action(
      action(async (queue: string, opts: DlqOptions, cmd: Command) => {
        assertName('queue', queue);
        const ctx = contextOf(cmd);
        const broker = await ctx.openBroker({ create: false });
        const dead = deadLetterQueueOf(queue);
        let hasDead: boolean;
        try {
          hasDead = (await requireQueue(broker, queue, [dead])).has(dead);
        } catch (err) {
          await broker.close();
          throw err;
        }
        if (!hasDead) {
          await broker.close();
          if (opts.json) {
            if (opts.requeue) process.stdout.write(JSON.stringify({ queue, requeued: 0 }) + '\n');
          } else if (opts.requeue)
            process.stdout.write(`requeued 0 dead letter(s) of "${queue}"\n`);
          else process.stdout.write(`no dead letters in "${dead}"\n`);
          return;
        }
        if (opts.requeue) {
          const { requeued } = await requeueDeadLetters(broker, queue, {
            onRequeued: (id, target) => {
              if (!opts.json)
                process.stdout.write(`requeued ${printable(id)} to "${printable(target)}"\n`);
            },
          });
          await broker.close();
          if (opts.json) process.stdout.write(JSON.stringify({ queue, requeued }) + '\n');
          else process.stdout.write(`requeued ${requeued} dead letter(s) of "${queue}"\n`);
          return;
        }
        const held: Delivery[] = [];
        let lastActivity = Date.now();
        const consumer = await broker.consume(
          dead,
          (d) => {
            lastActivity = Date.now();
            held.push(d);
          },
          { prefetch: opts.limit },
        );
        try {
          await waitForIdle(broker, dead, () => lastActivity, {
            enough: () => held.length >= opts.limit,
          });
        } finally {
          await consumer.cancel();
        }
        const views = held.map((d) => deadLetterView(d, queue));
        await Promise.all(held.map((d) => d.release()));
        const total = (await broker.stats(dead)).ready;
        await broker.close();
        if (opts.json) {
          for (const v of views) process.stdout.write(JSON.stringify(v) + '\n');
          return;
        }
        if (views.length === 0) {
          process.stdout.write(`no dead letters in "${dead}"\n`);
          return;
        }
        for (const v of views) {
          // Bodies, ids and reasons come from whoever published: escaped before they are shown.
          const body = v.body.length > 120 ? v.body.slice(0, 117) + '...' : v.body;
          process.stdout.write(
            `${printable(v.id)}  deliveries=${v.deliveries ?? '?'}  ${printable(v.reason)}\n    ${printable(body)}\n`,
          );
        }
        process.stdout.write(`${views.length} of ${total} dead letter(s) in "${dead}"\n`);
      }),
    );
}
