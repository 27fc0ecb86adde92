/**
 * The one reader of the URLs that name a broker or a store (`--broker`, `--store`,
 * `QTUNE_BROKER`, `QTUNE_STORE`): a scheme picks the implementation, and what follows it is a
 * file path (`embedded:PATH`, `sqlite:PATH`, a plain path), a name (`memory://NAME`) or a
 * network URL (`amqp://`, `http://`, `postgres://`). Every message shows the URL redacted.
 */

import { join, resolve } from 'node:path';
import { InputError } from './errors.js';
import { projectHome } from './project-home.js';
import { redact } from './redact.js';

/** A broker or store URL split at its scheme. */
export interface TargetUrl {
  /** The URL as given, trimmed. */
  readonly raw: string;
  /**
   * The scheme in lower case, without its colon; undefined for an empty URL or a plain file
   * path (a one-letter scheme is a Windows drive letter, `C:\...`).
   */
  readonly scheme: string | undefined;
  /** What follows `scheme:`; the whole URL when it has no scheme. */
  readonly rest: string;
}

/** Splits a broker or store URL at its scheme (see {@link TargetUrl}). */
export function splitTargetUrl(url: string | undefined): TargetUrl {
  const raw = (url ?? '').trim();
  const m = /^([a-z][a-z0-9+.-]*):(.*)$/i.exec(raw);
  if (!m || m[1]!.length === 1) return { raw, scheme: undefined, rest: raw };
  return { raw, scheme: m[1]!.toLowerCase(), rest: m[2]! };
}

/** What follows the scheme without a leading `//` (`memory://NAME`, `sqlite:///abs/path`). */
export function afterSlashes(target: TargetUrl): string {
  return target.rest.replace(/^\/\//, '');
}

/**
 * The absolute file path a URL names (`scheme:PATH`, `scheme://PATH` or a plain path),
 * resolved against `cwd`; `defaultName` in the project folder (see projectHome) when it names
 * none (an empty URL, or a scheme with nothing after it).
 */
export function targetPath(target: TargetUrl, cwd: string, defaultName: string): string {
  const path = target.scheme === undefined ? target.raw : afterSlashes(target);
  return path === '' ? join(projectHome(cwd), defaultName) : resolve(cwd, path);
}

/**
 * The InputError for a URL whose scheme nothing opens: `what` is `broker URL` or `store URL`,
 * `expected` lists the accepted forms.
 */
export function unknownScheme(what: string, target: TargetUrl, expected: string): InputError {
  return new InputError(
    `${what} "${redact(target.raw)}": unknown scheme "${target.scheme}:" (expected ${expected})`,
  );
}

/**
 * Parses a network URL (`amqp://`, `http://`, `postgres://`, ...) whose scheme must be one of
 * `schemes` (without colons). Throws an InputError naming `what` (`broker URL`, `gateway URL`,
 * `store URL`) and the URL with its password hidden when it does not parse, or has another
 * scheme (`expected`: the accepted forms).
 */
export function parseNetworkUrl(
  url: string,
  options: { what: string; schemes: readonly string[]; expected: string },
): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (err) {
    throw new InputError(`${options.what} "${redact(url)}" is not a valid URL`, { cause: err });
  }
  if (!options.schemes.includes(parsed.protocol.slice(0, -1).toLowerCase())) {
    throw new InputError(`${options.what} "${redact(url)}": expected ${options.expected}`);
  }
  return parsed;
}
