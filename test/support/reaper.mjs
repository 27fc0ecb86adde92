// @ts-check
/**
 * Cleanup that outlives the process which started a server. The tests and benchmarks start
 * RabbitMQ nodes (detached, in their own process group, so Ctrl-C does not reach them) and
 * PostgreSQL servers; when the process that started them dies before stopping them — kill -9,
 * a crash, Ctrl-C on a detached node — they would run on with their data directories.
 * `reapOnExit` starts a small detached shell that blocks reading a pipe from this process; the
 * pipe ends when this process exits in any way, and the shell then runs the cleanup script.
 */
import { spawn } from 'node:child_process';

/**
 * Runs `script` (sh) once this process has exited, however it exits, unless `cancel()` was
 * called first. The script sees `env` (default: this process's environment).
 * @param {string} script
 * @param {NodeJS.ProcessEnv} [env]
 * @returns {{ cancel(): void }}
 */
export function reapOnExit(script, env = process.env) {
  // `read` returns at end of input: when every copy of the pipe's write end is closed, which
  // happens when this process is gone. The shell is the only process of its group.
  const child = spawn('/bin/sh', ['-c', `read -r _ ; ${script}`], {
    env,
    stdio: ['pipe', 'ignore', 'ignore'],
    detached: true,
  });
  child.unref();
  const stdin = /** @type {import('node:net').Socket} */ (/** @type {unknown} */ (child.stdin));
  stdin.on('error', () => {});
  // The open pipe must not keep this process alive.
  stdin.unref();
  let cancelled = false;
  return {
    cancel() {
      if (cancelled) return;
      cancelled = true;
      try {
        process.kill(/** @type {number} */ (child.pid), 'SIGKILL');
      } catch {
        // already gone
      }
    },
  };
}
