import type { Command } from 'commander';
import type { Logger } from 'pino';
import { openBroker } from '../broker/open.js';
import type { Broker } from '../broker/contract.js';
import { BrokerError, ErrorCode, InputError, QtuneError, toError } from '../protocol/errors.js';
import { printable } from '../protocol/names.js';
import { redact } from '../protocol/redact.js';
import { openStore, type Store } from '../store/contract.js';
import { ExitCode } from './exit-codes.js';
import { createLogger, type LogFormat } from './logger.js';

/** Options every command inherits from the root program. */
export interface GlobalOptions {
  broker?: string;
  store?: string;
  logFormat: LogFormat;
  logLevel: string;
}

export interface CommandContext {
  globals: GlobalOptions;
  logger: Logger;
  /** Opens the broker chosen by `--broker` / `QTUNE_BROKER` (embedded default). */
  openBroker(): Promise<Broker>;
  /** Opens the store chosen by `--store` / `QTUNE_STORE` (SQLite at ./.qtune/store.db by default). */
  openStore(): Promise<Store>;
}

export function contextOf(cmd: Command): CommandContext {
  const globals = cmd.optsWithGlobals<GlobalOptions>();
  const logger = createLogger(globals.logFormat, globals.logLevel);
  return {
    globals,
    logger,
    async openBroker() {
      try {
        return await openBroker(globals.broker);
      } catch (err) {
        if (err instanceof QtuneError) throw err;
        throw new BrokerError(
          ErrorCode.BrokerUnavailable,
          `cannot open broker "${redact(globals.broker ?? 'embedded default')}": ${toError(err).message}`,
          { cause: err },
        );
      }
    },
    openStore: () => openStore(globals.store),
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
      // The last line of defence: no password and no terminal escape reaches stderr.
      process.stderr.write(`qtune: ${printable(redact(err.message))}\n`);
      if (process.env.QTUNE_DEBUG) process.stderr.write(`${err.stack ?? ''}\n`);
      process.exitCode = exitCodeOf(thrown);
    }
  };
}
