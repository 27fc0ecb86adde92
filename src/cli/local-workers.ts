import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Broker } from '../broker/contract.js';

/** Path of the compiled CLI entry point, for spawning local workers. */
export const CLI_PATH = fileURLToPath(new URL('./main.js', import.meta.url));

/** Path of a built-in handler module shipped with the CLI. */
export function builtinHandler(name: 'noop-handler' | 'demo-handler'): string {
  return fileURLToPath(new URL(`./builtin/${name}.js`, import.meta.url));
}

export interface LocalWorkerOptions {
  /** Broker the workers use; passed in their QTUNE_BROKER variable, never on their command line. */
  brokerUrl: string;
  queue: string;
  /** Handler module (`--module`); leave out when `args` choose the handler. */
  module?: string;
  count: number;
  concurrency: number;
  prefetch?: number;
  /** Extra flags for `qtune worker`: the same for each, or by worker index. */
  args?: string[] | ((index: number) => string[]);
  /** Where worker logs go (default: 'ignore'). */
  stdio?: 'ignore' | 'inherit';
  /**
   * Workers stop gracefully when this process exits, even by kill -9: each watches the end
   * of a stdin pipe from this process (default: false).
   */
  exitWithParent?: boolean;
}

export interface LocalWorkers {
  readonly children: ChildProcess[];
  /** Sends SIGTERM to every worker and waits for them to exit. */
  stop(): Promise<void>;
}

/** Starts `count` `qtune worker` processes on this machine. */
export function spawnLocalWorkers(options: LocalWorkerOptions): LocalWorkers {
  const children: ChildProcess[] = [];
  for (let i = 0; i < options.count; i++) {
    const args = [
      CLI_PATH,
      'worker',
      options.queue,
      ...(options.module !== undefined ? ['--module', options.module] : []),
      ...(options.exitWithParent ? ['--stop-on-stdin-end'] : []),
      '--concurrency',
      String(options.concurrency),
      ...(options.prefetch ? ['--prefetch', String(options.prefetch)] : []),
      ...(typeof options.args === 'function' ? options.args(i) : (options.args ?? [])),
    ];
    children.push(
      spawn(process.execPath, args, {
        // Through the environment, not the command line: `ps` shows every user a command line.
        env: { ...process.env, QTUNE_BROKER: options.brokerUrl },
        stdio: [options.exitWithParent ? 'pipe' : 'ignore', 'ignore', options.stdio ?? 'ignore'],
      }),
    );
  }
  return {
    children,
    async stop() {
      await Promise.all(
        children.map(
          (c) =>
            new Promise<void>((resolve) => {
              if (c.exitCode !== null || c.signalCode !== null) return resolve();
              c.once('exit', () => resolve());
              c.kill('SIGTERM');
            }),
        ),
      );
    },
  };
}

/** Waits until `queue` has at least `count` live consumers; throws after `timeoutMs`. */
export async function waitForConsumers(
  broker: Broker,
  queue: string,
  count: number,
  timeoutMs = 30_000,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if ((await broker.stats(queue)).consumers >= count) return;
    await sleep(50);
  }
  throw new Error(`queue "${queue}": ${count} worker(s) did not start within ${timeoutMs} ms`);
}

/** Resident set size of a process in MiB, from /proc (Linux); undefined elsewhere. */
export function rssMiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}
