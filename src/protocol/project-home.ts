/**
 * Where a project's own files live (the embedded broker's `broker.db`, the SQLite store's
 * `store.db`): the `.qtune/` folder of the working directory or of the nearest folder above it,
 * found as git finds `.git`, or the folder named by `QTUNE_HOME`.
 */

import { statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** Name of the project folder looked for from the working directory upward. */
export const PROJECT_DIR = '.qtune';

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/**
 * The project folder in use: `QTUNE_HOME` when set (used as is, the folder holding
 * `broker.db` and `store.db`), else the first `.qtune/` folder in `cwd` or a folder above it;
 * undefined when there is none.
 */
export function findProjectHome(
  cwd = process.cwd(),
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  const home = env.QTUNE_HOME?.trim();
  if (home) return resolve(cwd, home);
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    const candidate = join(dir, PROJECT_DIR);
    if (isDirectory(candidate)) return candidate;
    if (dirname(dir) === dir) return undefined;
  }
}

/**
 * The project folder that defaults resolve to: {@link findProjectHome}, or `./.qtune` (not
 * created here; a command that produces work creates it on first write).
 */
export function projectHome(cwd = process.cwd(), env: NodeJS.ProcessEnv = process.env): string {
  return findProjectHome(cwd, env) ?? resolve(cwd, PROJECT_DIR);
}
