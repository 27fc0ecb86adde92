/**
 * What a test file left behind: child processes of this process still running, servers still
 * listening, sockets still open (a broker or store connection), SQLite files still open (an
 * embedded broker or SQLite store handle). `leakGuard.setup.ts` takes a snapshot before each file
 * and fails the file naming whatever is new after it.
 *
 * Exempt on purpose: the cleanup shells of `reaper.mjs` (their job is to outlive what they
 * guard; a server they watch that is still running is reported itself), zombies (already
 * exited), and whatever existed before the file started (the test runner's own pipes).
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { Server, Socket } from 'node:net';
import { reaperPids } from './reaper.mjs';

/** What one snapshot saw, by kind. */
export interface Resources {
  processes: Map<number, string>;
  handles: Set<object>;
  files: Map<string, string>;
}

/** One thing left behind, in words: `child process 123 (sleep 30)`. */
export type Leak = string;

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Running child processes of this process (every thread's children), pid → command line. */
function childProcesses(): Map<number, string> {
  const found = new Map<number, string>();
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return found; // no procfs: nothing to say
  }
  for (const task of tasks) {
    const children = read(`/proc/self/task/${task}/children`) ?? '';
    for (const pid of children.split(/\s+/).filter(Boolean).map(Number)) {
      const stat = read(`/proc/${pid}/stat`);
      // The state follows the command name in parentheses; Z is exited, not yet reaped.
      if (stat === undefined || stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      if (reaperPids.has(pid)) continue;
      const cmdline = (read(`/proc/${pid}/cmdline`) ?? '').split('\0').filter(Boolean).join(' ');
      found.set(pid, cmdline.length > 120 ? `${cmdline.slice(0, 117)}...` : cmdline);
    }
  }
  return found;
}

/** Open file descriptors on SQLite files (`*.db`, `*.sqlite`, their `-wal`/`-shm`), fd → path. */
function sqliteFiles(): Map<string, string> {
  const found = new Map<string, string>();
  let fds: string[];
  try {
    fds = readdirSync('/proc/self/fd');
  } catch {
    return found;
  }
  for (const fd of fds) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (/\.(db|sqlite)(-wal|-shm|-journal)?$/.test(target)) found.set(fd, target);
  }
  return found;
}

/** libuv handles that hold a server, a connection or a child process open. */
function activeHandles(): Set<object> {
  const handles = (process as unknown as { _getActiveHandles(): object[] })._getActiveHandles();
  return new Set(
    handles.filter((h) => h instanceof Server || h instanceof Socket || isChildProcess(h)),
  );
}

function isChildProcess(h: object): boolean {
  return h.constructor?.name === 'ChildProcess';
}

/** What is open now. */
export function snapshot(): Resources {
  return { processes: childProcesses(), handles: activeHandles(), files: sqliteFiles() };
}

function describeHandle(h: object): Leak | undefined {
  if (h instanceof Server) {
    if (!h.listening) return undefined;
    const a = h.address();
    const where = typeof a === 'string' ? a : a ? `${a.address}:${a.port}` : '?';
    return `server listening on ${where}`;
  }
  if (h instanceof Socket) {
    if (h.destroyed) return undefined;
    // Pipes of the runner and stdio are in the baseline; a TCP or Unix connection remains.
    const remote =
      h.remoteAddress !== undefined ? `${h.remoteAddress}:${h.remotePort}` : 'a local pipe';
    return `open socket to ${remote}`;
  }
  if (isChildProcess(h)) {
    const c = h as { pid?: number; spawnargs?: string[]; exitCode: number | null };
    if (c.exitCode !== null) return undefined;
    return `child process handle ${c.pid} (${(c.spawnargs ?? []).join(' ')})`;
  }
  return undefined;
}

/** What is open now that was not open at `before`, in words; empty when nothing leaked. */
export function leaksSince(before: Resources): Leak[] {
  const now = snapshot();
  const leaks: Leak[] = [];
  for (const [pid, cmd] of now.processes) {
    if (!before.processes.has(pid)) leaks.push(`child process ${pid} (${cmd})`);
  }
  const seenPids = new Set(now.processes.keys());
  for (const h of now.handles) {
    if (before.handles.has(h)) continue;
    const pid = isChildProcess(h) ? (h as { pid?: number }).pid : undefined;
    if (pid !== undefined && (seenPids.has(pid) || reaperPids.has(pid))) continue;
    const leak = describeHandle(h);
    if (leak !== undefined) leaks.push(leak);
  }
  for (const [fd, path] of now.files) {
    if (before.files.get(fd) !== path) leaks.push(`open SQLite file ${path} (fd ${fd})`);
  }
  return leaks;
}

/** Kills the child processes named in a leak report (they are ours), so they do not linger. */
export function killLeakedProcesses(before: Resources): void {
  for (const pid of childProcesses().keys()) {
    if (before.processes.has(pid)) continue;
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
