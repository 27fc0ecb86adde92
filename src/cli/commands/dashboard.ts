import { Command, Option } from 'commander';
import { intAtLeast } from '../options.js';
import { serveCommand } from './serve.js';

interface DashboardOptions {
  port: number;
}

/**
 * `qtune dashboard`: the gateway without tokens on 127.0.0.1, for one machine (the embedded
 * broker and SQLite store by default), so that its page at `/` shows this project's queues,
 * workers, jobs and experiments. It runs `qtune serve --no-auth --host 127.0.0.1`.
 */
export function dashboardCommand(): Command {
  return new Command('dashboard')
    .description(
      'web dashboard on this machine: queues, workers, jobs and experiments at http://127.0.0.1:PORT/',
    )
    .addOption(
      new Option('--port <n>', 'TCP port (0: any free port)')
        .argParser(intAtLeast(0))
        .default(8080),
    )
    .addHelpText(
      'after',
      '\nListens on 127.0.0.1 only and needs no token (as `qtune serve --no-auth`); for a shared\n' +
        'machine run `qtune serve` with tokens (a viewer token reads the dashboard, acts on nothing).\n' +
        'Uses --broker and --store (default: ./.qtune/). SIGINT or SIGTERM stops it (exit 0).\n' +
        'Exit codes: 0 stopped cleanly, 2 bad input (port in use), 3 broker unavailable.',
    )
    .action(async (opts: DashboardOptions, cmd: Command) => {
      // The serve command under this one, so that it reads the global --broker and --store.
      const serve = serveCommand();
      serve.copyInheritedSettings(cmd);
      cmd.addCommand(serve);
      await serve.parseAsync(['--no-auth', '--host', '127.0.0.1', '--port', String(opts.port)], {
        from: 'user',
      });
    });
}
