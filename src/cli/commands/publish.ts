import { Command, Option } from 'commander';
import { submitTasks } from '../../patterns/work-queue.js';
import { InputError } from '../../protocol/errors.js';
import { action, contextOf } from '../context.js';
import { readJsonLines } from '../jsonl.js';
import { intAtLeast } from '../options.js';

interface PublishOptions {
  file?: string;
  keyField?: string;
  priority: number;
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
    .option('--json', 'print the outcome as JSON')
    .addHelpText(
      'after',
      '\nA malformed line rejects the whole file with its line number; nothing is published.\n' +
        'Exit codes: 0 published, 2 bad input, 3 broker unavailable.',
    )
    .action(
      action(async (queue: string, opts: PublishOptions, cmd: Command) => {
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
          return { payload: value, key, priority: opts.priority };
        });
        const broker = await ctx.openBroker();
        try {
          await submitTasks(broker, queue, items, { batchSize: BATCH, inFlight: IN_FLIGHT });
        } finally {
          await broker.close();
        }
        if (opts.json)
          process.stdout.write(JSON.stringify({ queue, published: items.length }) + '\n');
        else process.stdout.write(`published ${items.length} task(s) to "${queue}"\n`);
      }),
    );
}
