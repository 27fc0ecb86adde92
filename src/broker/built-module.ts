import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const seen = new Map<string, boolean>();

/**
 * Whether the module at `url` (a sibling `.js` of the caller, for a worker thread) is there to
 * run: it is in a build, not when the caller runs from TypeScript sources. Checked once per URL.
 */
export function builtModuleExists(url: URL): boolean {
  let exists = seen.get(url.href);
  if (exists === undefined) {
    exists = url.protocol === 'file:' && existsSync(fileURLToPath(url));
    seen.set(url.href, exists);
  }
  return exists;
}
