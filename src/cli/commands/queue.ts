import { Command } from 'commander';
import type { Broker } from '../../broker/contract.js';
import { action, contextOf, requireQueue } from '../context.js';

interface QueueOptions {
  json?: boolean;
}

/** One verb of `qtune queue`: opens the broker without creating anything and refuses an unknown queue. */
function verb(
  name: string,
  description: string,
  help: string,
  run: (broker: Broker, queue: string) => Promise<{ json: object; text: string }>,
): Command {
  return new Command(name)
    .description(description)
    .argument('<queue>', 'queue name')
    .option('--json', 'print the outcome as JSON')
    .addHelpText(
      'after',
      `\n${help}\nExit codes: 0 done, 1 the broker cannot do this, 3 broker unavailable, 4 no such queue or broker file.`,
    )
    .action(
      action(async (queue: string, opts: QueueOptions, cmd: Command) => {
        const broker = await contextOf(cmd).openBroker({ create: false });
        try {
          await requireQueue(broker, queue);
          const out = await run(broker, queue);
          process.stdout.write(opts.json ? JSON.stringify(out.json) + '\n' : out.text + '\n');
        } finally {
          await broker.close();
        }
      }),
    );
}

export function queueCommand(): Command {
  return new Command('queue')
    .description('manage a queue: purge, delete, pause, resume')
    .addCommand(
      verb(
        'purge',
        'remove the tasks waiting in a queue (ready or delayed); tasks in flight finish',
        'Dead letters stay in <queue>.dead; results stay in <queue>.results.',
        async (broker, queue) => {
          const purged = await broker.purgeQueue(queue);
          return { json: { queue, purged }, text: `purged ${purged} task(s) from "${queue}"` };
        },
      ),
    )
    .addCommand(
      verb(
        'delete',
        'delete a queue and every message in it',
        'Its dead-letter queue (<queue>.dead) and result queue (<queue>.results) are left alone.',
        async (broker, queue) => {
          await broker.deleteQueue(queue);
          return { json: { queue, deleted: true }, text: `deleted queue "${queue}"` };
        },
      ),
    )
    .addCommand(
      verb(
        'pause',
        'stop handing out tasks of a queue to every worker until resumed',
        'Tasks in flight finish; publishing still works. Not on RabbitMQ (exit 1).',
        async (broker, queue) => {
          await broker.pauseQueue(queue);
          return { json: { queue, paused: true }, text: `paused queue "${queue}"` };
        },
      ),
    )
    .addCommand(
      verb(
        'resume',
        'let workers take tasks of a paused queue again',
        'Resuming a queue that is not paused changes nothing.',
        async (broker, queue) => {
          await broker.resumeQueue(queue);
          return { json: { queue, paused: false }, text: `resumed queue "${queue}"` };
        },
      ),
    );
}
