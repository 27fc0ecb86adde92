import { existsSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Command } from 'commander';
import type { Logger } from 'pino';
import { openBroker, parseBrokerUrl, type OpenBrokerOptions } from '../broker/open.js';
import type { Broker } from '../broker/contract.js';
import { closestName } from '../protocol/closest-name.js';
import {
  BrokerError,
  ErrorCode,
  InputError,
  NotFoundError,
  QtuneError,
  toError,
} from '../protocol/errors.js';
import { printable } from '../protocol/names.js';
import { findProjectHome, PROJECT_DIR } from '../protocol/project-home.js';
import { redact } from '../protocol/redact.js';
import type { Store } from '../store/contract.js';
import { openStore, parseStoreUrl } from '../store/open.js';
import { ExitCode } from './exit-codes.js';
import { createLogger, type LogFormat } from './logger.js';

export { requireQueue } from '../patterns/require-queue.js';

/** Options every command inherits from the root program. */
export interface GlobalOptions {
  broker?: string;
  store?: string;
  logFormat: LogFormat;
  logLevel: string;
}

/** How a command opens the broker or the store. */
export interface OpenOptions {
  /**
   * Whether a missing broker or store file (and its `.qtune/` folder) may be created (default:
   * true). Commands that only read pass false: a missing file is a NotFoundError naming it.
   */
  create?: boolean;
}

export interface CommandContext {
  globals: GlobalOptions;
  logger: Logger;
  /**
   * Opens the broker chosen by `--broker` / `QTUNE_BROKER` (default: embedded, `broker.db` in
   * the project's `.qtune/` folder).
   */
  openBroker(options?: OpenOptions): Promise<Broker>;
  /**
   * Opens the store chosen by `--store` / `QTUNE_STORE` (default: SQLite, `store.db` in the
   * project's `.qtune/` folder).
   */
  openStore(options?: OpenOptions): Promise<Store>;
  /**
   * Opens the broker as {@link openBroker} does, but while a network broker (RabbitMQ, a
   * gateway) cannot be reached, waits and tries again with backoff (0.5 s doubling to 10 s),
   * logging each wait, for at most `timeoutMs` (default: forever); then throws the last error.
   * For long-running commands: workers, sinks, `results --follow`, `serve`.
   */
  openBrokerWaiting(options?: WaitOptions): Promise<Broker>;
}

/** How {@link CommandContext.openBrokerWaiting} waits. */
export interface WaitOptions {
  /** Longest wait for the broker in ms (default: forever; 0: one attempt). */
  timeoutMs?: number;
  /** Broker URL instead of `--broker` (e.g. a worker's `--gateway`). */
  url?: string;
  /** Bearer token for a gateway URL. */
  token?: string;
  /** Stops waiting (the last error is thrown). */
  signal?: AbortSignal;
  /** As in {@link OpenOptions}, for an embedded broker (default: true). */
  create?: boolean;
}

/** First and longest pause between attempts of openBrokerWaiting (ms). */
const WAIT_FIRST_MS = 500;
const WAIT_MAX_MS = 10_000;

async function openWithContext(
  url: string | undefined,
  options: OpenBrokerOptions,
): Promise<Broker> {
  try {
    return await openBroker(url, options);
  } catch (err) {
    if (err instanceof QtuneError) throw err;
    throw new BrokerError(
      ErrorCode.BrokerUnavailable,
      `cannot open broker "${redact(url ?? 'embedded default')}": ${toError(err).message}`,
      { cause: err },
    );
  }
}

/**
 * Throws NotFoundError unless the SQLite file `path` exists: the project folder when the path
 * is the default one and no `.qtune/` was found, else the file, with the closest `.db` file of
 * its folder as suggestion.
 */
function assertFileExists(kind: string, path: string, isDefault: boolean): void {
  if (existsSync(path)) return;
  if (isDefault && findProjectHome() === undefined) {
    const err = new NotFoundError('project folder', join(process.cwd(), PROJECT_DIR));
    err.message =
      `no ${PROJECT_DIR}/ folder in "${process.cwd()}" or any folder above it: run this command ` +
      `in the project, or name it with QTUNE_HOME, --broker or --store`;
    throw err;
  }
  let siblings: string[] = [];
  try {
    siblings = readdirSync(dirname(path)).filter((f) => f.endsWith('.db'));
  } catch {
    // The folder is missing too: nothing to suggest.
  }
  const near = closestName(basename(path), siblings);
  throw new NotFoundError(kind, path, near === undefined ? undefined : join(dirname(path), near));
}

export function contextOf(cmd: Command): CommandContext {
  const globals = cmd.optsWithGlobals<GlobalOptions>();
  const logger = createLogger(globals.logFormat, globals.logLevel);
  const ctx: CommandContext = {
    globals,
    logger,
    async openBroker(options: OpenOptions = {}) {
      if (options.create === false) {
        const target = parseBrokerUrl(globals.broker);
        if (target.kind === 'embedded') {
          assertFileExists('broker file', target.location, !globals.broker?.trim());
        }
      }
      return openWithContext(globals.broker, { create: options.create !== false });
    },
    async openBrokerWaiting(options: WaitOptions = {}) {
      const url = options.url ?? globals.broker;
      const open = (): Promise<Broker> =>
        openWithContext(url, options.token === undefined ? {} : { token: options.token });
      const kind = parseBrokerUrl(url).kind;
      // A file or an in-process broker is there or not: waiting would not change it.
      if (kind === 'embedded' || kind === 'memory') {
        return options.url === undefined
          ? ctx.openBroker(options.create === undefined ? {} : { create: options.create })
          : open();
      }
      const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
      let pause = WAIT_FIRST_MS;
      for (let attempt = 1; ; attempt++) {
        try {
          const broker = await open();
          if (attempt > 1) logger.info(`broker ${redact(url ?? '')} reachable; connected`);
          return broker;
        } catch (err) {
          if (exitCodeOf(err) !== ExitCode.BrokerUnavailable) throw err;
          const left = deadline - Date.now();
          if (left <= 0 || options.signal?.aborted) {
            if (options.timeoutMs !== undefined && attempt > 1) {
              (err as Error).message += ` (gave up after --connect-timeout ${options.timeoutMs}ms)`;
            }
            throw err;
          }
          const wait = Math.min(pause, left);
          logger.warn(
            { attempt, retryInMs: wait },
            `${toError(err).message}; retrying in ${(wait / 1000).toFixed(1)}s`,
          );
          await sleep(wait, options.signal);
          pause = Math.min(pause * 2, WAIT_MAX_MS);
        }
      }
    },
    async openStore(options: OpenOptions = {}) {
      if (options.create === false) {
        const target = parseStoreUrl(globals.store);
        if (target.kind === 'sqlite') {
          assertFileExists('store file', target.location, !globals.store?.trim());
        }
      }
      return openStore(globals.store);
    },
  };
  return ctx;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Maps an error to the exit code scripts rely on. A store error (`STORE_UNAVAILABLE`,
 * `STORE_STATE`) is a failure (1): exit code 3 is for the broker alone.
 */
export function exitCodeOf(err: unknown): number {
  if (err instanceof InputError) return ExitCode.BadInput;
  if (err instanceof QtuneError && err.code === ErrorCode.BadInput) return ExitCode.BadInput;
  if (err instanceof QtuneError && err.code === ErrorCode.NotFound) return ExitCode.NotFound;
  if (err instanceof BrokerError && err.code === ErrorCode.BrokerUnavailable) {
    return ExitCode.BrokerUnavailable;
  }
  return ExitCode.Failure;
}

/**
 * Wraps a command action: errors print one line `qtune: <message>` on stderr and set the exit
 * code; the action's own return value (a number) becomes the exit code otherwise.
 */
export function action<A extends unknown[]>(
  fn: (...args: A) => Promise<number | void>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      const code = await fn(...args);
      process.exitCode = code ?? ExitCode.Ok;
    } catch (thrown) {
      const err = toError(thrown);
      // The last line of defence: no password and no terminal escape reaches stderr.
      process.stderr.write(`qtune: ${printable(redact(err.message))}\n`);
      if (process.env.QTUNE_DEBUG) process.stderr.write(`${err.stack ?? ''}\n`);
      process.exitCode = exitCodeOf(thrown);
    }
  };
}
