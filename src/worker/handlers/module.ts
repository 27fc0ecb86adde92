import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InputError } from '../../protocol/errors.js';
import type { TaskContext, TaskHandler } from './types.js';

/**
 * Imports a JavaScript module whose default export is `async (payload, ctx) => result` and
 * returns it as a handler. `path` is resolved against the working directory. Node 20 cannot
 * import TypeScript by itself: compile the module to JS first, or run the worker under a loader
 * (e.g. `node --import tsx`). A CommonJS module may set `module.exports` to the function.
 */
export async function loadModuleHandler(path: string): Promise<TaskHandler> {
  const fn = await loadModuleFunction(path, '(payload, ctx) => result');
  // A promise from the module is passed on as it is (no wrapper promise per task); a plain
  // value or a throw becomes one.
  return (payload: unknown, ctx: TaskContext) => {
    try {
      const out = fn(payload, ctx);
      return out instanceof Promise ? out : Promise.resolve(out);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  };
}

/**
 * Imports the module at `path` (resolved against the working directory) and returns its
 * default export, which must be a function; `signature` describes it in errors.
 */
export async function loadModuleFunction(
  path: string,
  signature: string,
): Promise<(...args: unknown[]) => unknown> {
  const absolute = isAbsolute(path) ? path : resolve(process.cwd(), path);
  let mod: unknown;
  try {
    mod = await import(pathToFileURL(absolute).href);
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    const hint =
      code === 'ERR_UNKNOWN_FILE_EXTENSION' && /\.[cm]?tsx?$/.test(absolute)
        ? ' (TypeScript must be compiled to JS first, or run the worker with a loader such as `node --import tsx`)'
        : '';
    const detail = err instanceof Error ? err.message : String(err);
    throw new InputError(`handler module "${path}": cannot load it: ${detail}${hint}`, {
      cause: err,
    });
  }
  const fn = defaultFunction(mod);
  if (!fn) {
    const found = describeDefault(mod);
    throw new InputError(
      `handler module "${path}": expected a default export that is a function ${signature}, found ${found}`,
    );
  }
  return fn;
}

type AnyHandler = (...args: unknown[]) => unknown;

function defaultFunction(mod: unknown): AnyHandler | undefined {
  let candidate: unknown = (mod as { default?: unknown } | null)?.default;
  // A CommonJS module compiled from `export default` arrives as { default: { default: fn } }.
  if (candidate !== null && typeof candidate === 'object' && 'default' in candidate) {
    candidate = (candidate as { default: unknown }).default;
  }
  return typeof candidate === 'function' ? (candidate as AnyHandler) : undefined;
}

function describeDefault(mod: unknown): string {
  const value: unknown = (mod as { default?: unknown } | null)?.default;
  if (value === undefined) {
    const names = mod !== null && typeof mod === 'object' ? Object.keys(mod) : [];
    return names.length > 0
      ? `no default export (exports: ${names.join(', ')})`
      : 'no default export';
  }
  return `a default export of type ${value === null ? 'null' : typeof value}`;
}
