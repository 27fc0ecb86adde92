#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { benchCommand } from './commands/bench.js';
import { demoCommand } from './commands/demo.js';
import { dlqCommand } from './commands/dlq.js';
import { experimentCommand } from './commands/experiment.js';
import { jobCommand } from './commands/job.js';
import { publishCommand } from './commands/publish.js';
import { resultsCommand } from './commands/results.js';
import { serveCommand } from './commands/serve.js';
import { sinkCommand } from './commands/sink.js';
import { statusCommand } from './commands/status.js';
import { workerCommand } from './commands/worker.js';
import { ExitCode } from './exit-codes.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

/** Builds the `qtune` program; exported for tests. */
export function buildProgram(): Command {
  const program = new Command('qtune')
    .description('distributed AutoML and batch jobs over message queues')
    .version(pkg.version)
    .addOption(
      new Option(
        '--broker <url>',
        'broker URL: embedded:PATH, memory://NAME, amqp(s)://HOST, http(s)://GATEWAY (default: embedded at ./.qtune/broker.db)',
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
  for (const cmd of [
    publishCommand(),
    workerCommand(),
    resultsCommand(),
    statusCommand(),
    dlqCommand(),
    benchCommand(),
    demoCommand(),
    experimentCommand(),
    jobCommand(),
    sinkCommand(),
    serveCommand(),
  ]) {
    cmd.copyInheritedSettings(program);
    program.addCommand(cmd);
  }
  return program;
}

// Output piped into `head` and the like: a closed pipe ends the command quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(ExitCode.Ok);
  throw err;
});

await buildProgram().parseAsync(process.argv);
