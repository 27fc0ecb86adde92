import { existsSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Command } from 'commander';
import type { Logger } from 'pino';
import { openBroker, parseBrokerUrl, redact } from '../broker/open.js';
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
import { findProjectHome, PROJECT_DIR } from '../protocol/project-home.js';
import { openStore, parseStoreUrl, type Store } from '../store/contract.js';
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
  return {
    globals,
    logger,
    async openBroker(options: OpenOptions = {}) {
      if (options.create === false) {
        const target = parseBrokerUrl(globals.broker);
        if (target.kind === 'embedded') {
          assertFileExists('broker file', target.location, !globals.broker?.trim());
        }
      }
      try {
        return await openBroker(globals.broker, { create: options.create !== false });
      } catch (err) {
        if (err instanceof QtuneError) throw err;
        throw new BrokerError(
          ErrorCode.BrokerUnavailable,
          `cannot open broker "${redact(globals.broker ?? 'embedded default')}": ${toError(err).message}`,
          { cause: err },
        );
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
}

/** Maps an error to the exit code scripts rely on. */
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
      process.stderr.write(`qtune: ${err.message}\n`);
      if (process.env.QTUNE_DEBUG) process.stderr.write(`${err.stack ?? ''}\n`);
      process.exitCode = exitCodeOf(thrown);
    }
  };
}
