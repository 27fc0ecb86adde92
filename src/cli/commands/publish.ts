import { Command, Option } from 'commander';
import { submitTasks } from '../../patterns/work-queue.js';
import { InputError } from '../../protocol/errors.js';
import { assertName } from '../../protocol/names.js';
import { action, contextOf } from '../context.js';
import { readJsonLines } from '../jsonl.js';
import { intAtLeast, parseDuration } from '../options.js';

interface PublishOptions {
  file?: string;
  keyField?: string;
  priority: number;
  delay?: number;
  json?: boolean;
}

/** Tasks per publish call, and publish calls in flight at once. */
const BATCH = 1_000;
const IN_FLIGHT = 4;

export function publishCommand(): Command {
  return new Command('publish')
    .description('publish one task per JSON line of a file (or stdin) to a queue')
    .argument('<queue>', 'queue name')
    .option('-f, --file <path>', 'JSON Lines file, or - for stdin (default: stdin)')
    .option('--key-field <name>', 'payload field whose value becomes the idempotency key')
    .addOption(
      new Option('--priority <n>', 'priority 0-9, higher first')
        .argParser(intAtLeast(0))
        .default(0),
    )
    .addOption(
      new Option(
        '--delay <duration>',
        'deliver no task before this long from now (e.g. 30s, 10m, 2h)',
      ).argParser(parseDuration),
    )
    .option('--json', 'print the outcome as JSON')
    .addHelpText(
      'after',
      '\nA malformed line, or a task a worker would refuse (a key over 1024 characters, a name with a\n' +
        'control character; limits in docs/protocol.md), rejects the whole file with its line number\n' +
        'and field; nothing is published.\n' +
        'With --delay every task waits in the queue (counted as delayed by status) until then.\n' +
        'Exit codes: 0 published, 2 bad input, 3 broker unavailable.',
    )
    .action(
      action(async (queue: string, opts: PublishOptions, cmd: Command) => {
        assertName('queue', queue);
        const ctx = contextOf(cmd);
        const lines = await readJsonLines(opts.file ?? '-');
        const source = opts.file && opts.file !== '-' ? `"${opts.file}"` : 'stdin';
        const items = lines.map(({ line, value }) => {
          let key: string | undefined;
          if (opts.keyField !== undefined) {
            const field =
              value !== null && typeof value === 'object' && !Array.isArray(value)
                ? (value as Record<string, unknown>)[opts.keyField]
                : undefined;
            if (field === undefined || field === null || typeof field === 'object') {
              throw new InputError(
                `${source} line ${line}: key field "${opts.keyField}" is missing or not a scalar; nothing was published`,
              );
            }
            key = String(field);
          }
          return {
            payload: value,
            key,
            priority: opts.priority,
            ...(opts.delay !== undefined && opts.delay > 0 && { delayMs: opts.delay }),
          };
        });
        // submitTasks checks every task with the schema a worker reads it with before it
        // declares or sends anything.
        const label = (i: number) => `${source} line ${lines[i]!.line}`;
        // Before publishing: the broker counts the delay from its own, later, clock reading.
        const notBefore = new Date(Date.now() + (opts.delay ?? 0)).toISOString();
        const broker = await ctx.openBroker();
        try {
          await submitTasks(broker, queue, items, { label, batchSize: BATCH, inFlight: IN_FLIGHT });
        } finally {
          await broker.close();
        }
        const delayMs = opts.delay ?? 0;
        if (opts.json) {
          process.stdout.write(
            JSON.stringify({
              queue,
              published: items.length,
              ...(delayMs > 0 && { notBefore }),
            }) + '\n',
          );
        } else {
          const when = delayMs > 0 ? `, not delivered before ${notBefore}` : '';
          process.stdout.write(`published ${items.length} task(s) to "${queue}"${when}\n`);
        }
      }),
    );
}
