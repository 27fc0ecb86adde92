#!/usr/bin/env node
import { Command, Option } from 'commander';
import { ExitCode } from './exit-codes.js';
import { printable } from '../protocol/names.js';
import { redact } from '../protocol/redact.js';
import { qtuneVersion } from './version.js';

/**
 * Each command's module, loaded only when needed: a command line that names its command loads
 * that one alone (a worker does not load the gateway, the store drivers or the samplers), and
 * only the top-level help loads them all.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  publish: async () => (await import('./commands/publish.js')).publishCommand(),
  worker: async () => (await import('./commands/worker.js')).workerCommand(),
  results: async () => (await import('./commands/results.js')).resultsCommand(),
  status: async () => (await import('./commands/status.js')).statusCommand(),
  dlq: async () => (await import('./commands/dlq.js')).dlqCommand(),
  bench: async () => (await import('./commands/bench.js')).benchCommand(),
  demo: async () => (await import('./commands/demo.js')).demoCommand(),
  experiment: async () => (await import('./commands/experiment.js')).experimentCommand(),
  job: async () => (await import('./commands/job.js')).jobCommand(),
  sink: async () => (await import('./commands/sink.js')).sinkCommand(),
  serve: async () => (await import('./commands/serve.js')).serveCommand(),
  queue: async () => (await import('./commands/queue.js')).queueCommand(),
  dashboard: async () => (await import('./commands/dashboard.js')).dashboardCommand(),
};

/**
 * Builds the `qtune` program with the commands `argv` may run: the one it names when its first
 * argument is a command, else all of them (help, global options first).
 */
export async function buildProgram(argv: readonly string[] = process.argv): Promise<Command> {
  const program = new Command('qtune')
    .description('distributed AutoML and batch jobs over message queues')
    .version(qtuneVersion())
    .addOption(
      new Option(
        '--broker <url>',
        'broker URL: embedded:PATH, memory://NAME, amqp(s)://HOST, nats://HOST, http(s)://GATEWAY (default: embedded at ./.qtune/broker.db)',
      ).env('QTUNE_BROKER'),
    )
    .addOption(
      new Option(
        '--store <url>',
        'store for experiments, jobs and results: a SQLite file or postgres://... (default: ./.qtune/store.db)',
      ).env('QTUNE_STORE'),
    )
    .addOption(
      new Option('--log-format <format>', 'log format on stderr')
        .choices(['text', 'json'])
        .default('text')
        .env('QTUNE_LOG_FORMAT'),
    )
    .addOption(
      new Option('--log-level <level>', 'least severe level logged')
        .choices(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
        .default('info')
        .env('QTUNE_LOG_LEVEL'),
    )
    .showHelpAfterError()
    .configureOutput({
      // Usage errors quote what was typed: no terminal escape and no password reaches stderr.
      outputError: (text, write) =>
        write(text.replace(/[^\n]+/gu, (line) => printable(redact(line)))),
    })
    .exitOverride((err) => {
      // commander reports usage errors with exit code 1; scripts get 2 for bad usage.
      if (
        err.code === 'commander.helpDisplayed' ||
        err.code === 'commander.version' ||
        err.code === 'commander.help'
      ) {
        process.exit(ExitCode.Ok);
      }
      process.exit(ExitCode.BadInput);
    });
  const first = argv[2];
  const names =
    first !== undefined && Object.hasOwn(COMMANDS, first) ? [first] : Object.keys(COMMANDS);
  for (const cmd of await Promise.all(names.map((n) => COMMANDS[n]!()))) {
    inheritSettings(cmd, program);
    program.addCommand(cmd);
  }
  return program;
}

/**
 * Copies the root's settings (exit codes, help after errors) down to `cmd` and every command
 * under it: commander copies them only to subcommands created after the parent has them, and
 * `job submit` or `experiment run` were created before, so their usage errors exited 1.
 */
function inheritSettings(cmd: Command, parent: Command): void {
  cmd.copyInheritedSettings(parent);
  for (const sub of cmd.commands) inheritSettings(sub, cmd);
}

// Output piped into `head` and the like: a closed pipe ends the command quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(ExitCode.Ok);
  throw err;
});

await (await buildProgram(process.argv)).parseAsync(process.argv);
