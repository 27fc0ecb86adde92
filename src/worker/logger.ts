/**
 * The logging surface qtune's worker uses. A pino logger fits it as is; the default does
 * nothing.
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  /** Returns a logger that adds `bindings` to every line (optional). */
  child?(bindings: Record<string, unknown>): Logger;
  /** Whether lines of `level` are written (optional; pino has it). Without it, they are. */
  isLevelEnabled?(level: string): boolean;
}

const noop = (): void => {};

/** A logger that discards everything. */
export const silentLogger: Logger = {
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => silentLogger,
  isLevelEnabled: () => false,
};

/** `logger.child(bindings)` where supported, else `logger` itself. */
export function childLogger(logger: Logger, bindings: Record<string, unknown>): Logger {
  return typeof logger.child === 'function' ? logger.child(bindings) : logger;
}
