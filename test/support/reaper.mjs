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

const registry = /** @type {Record<symbol, Set<number> | undefined>} */ (
  /** @type {unknown} */ (globalThis)
);
/**
 * Pids of the cleanup shells this process started and has not cancelled. They outlive what they
 * guard by design, so the leak guard (leaks.ts) does not count them. One set per process, even
 * if this module is loaded twice.
 */
export const reaperPids = (registry[Symbol.for('qtune.test.reaperPids')] ??= new Set());

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
  const pid = /** @type {number} */ (child.pid);
  reaperPids.add(pid);
  const stdin = /** @type {import('node:net').Socket} */ (/** @type {unknown} */ (child.stdin));
  stdin.on('error', () => {});
  // The open pipe must not keep this process alive.
  stdin.unref();
  let cancelled = false;
  return {
    cancel() {
      if (cancelled) return;
      cancelled = true;
      reaperPids.delete(pid);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    },
  };
}
