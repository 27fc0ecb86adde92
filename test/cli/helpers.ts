import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TaskResult } from '../../src/protocol/result.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const CLI = join(ROOT, 'dist/cli/main.js');
export const FIXTURES = join(ROOT, 'test/fixtures');

export function assertBuilt(): void {
  if (!existsSync(CLI))
    throw new Error(`${CLI} is missing: run "npm run build" first (npm test does)`);
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A temp dir with a broker file; removed by cleanup(). */
export function tempBroker(): { dir: string; url: string; marks: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'qtune-cli-'));
  const marks = join(dir, 'marks');
  mkdirSync(marks);
  return {
    dir,
    url: join(dir, 'broker.db'),
    marks,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Runs a program to completion, collecting its output; rejects after `timeoutMs`. */
export function runProcess(
  command: string,
  args: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(command, args, {
      env: { ...process.env, ...opts.env },
      ...(opts.cwd !== undefined && { cwd: opts.cwd }),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} ${args.join(' ')} timed out\nstderr: ${stderr}`));
    }, opts.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolveRun({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs the CLI to completion. */
export function runCli(
  args: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<RunResult> {
  return runProcess(process.execPath, [CLI, ...args], opts);
}

/** The results `qtune results <queue>` prints (and takes off the queue). */
export async function readResults<V = unknown>(
  queue: string,
  brokerUrl: string,
): Promise<TaskResult<V>[]> {
  const res = await runCli(['results', queue, '--broker', brokerUrl]);
  if (res.code !== 0) throw new Error(`qtune results ${queue} exited ${res.code}: ${res.stderr}`);
  return res.stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as TaskResult<V>);
}

/** Publishes `payloads` to `queue` with `qtune publish --key-field id`, from a file in `dir`. */
export async function publishPayloads(
  dir: string,
  brokerUrl: string,
  queue: string,
  payloads: readonly unknown[],
): Promise<void> {
  const file = join(dir, `${queue}-${Date.now()}.jsonl`);
  writeFileSync(file, payloads.map((p) => JSON.stringify(p)).join('\n') + '\n');
  const res = await runCli([
    'publish',
    queue,
    '--file',
    file,
    '--key-field',
    'id',
    '--broker',
    brokerUrl,
  ]);
  if (res.code !== 0) throw new Error(`qtune publish ${queue} exited ${res.code}: ${res.stderr}`);
}

/** Starts a long-running CLI process (e.g. a worker). */
export function startCli(
  args: string[],
  env?: NodeJS.ProcessEnv,
): ChildProcess & { stderrText: () => string } {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  }) as ChildProcess & { stderrText: () => string };
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  child.stdout!.resume();
  child.stderrText = () => stderr;
  return child;
}

export function exited(
  child: ChildProcess,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  }
  return new Promise((r) => child.once('exit', (code, signal) => r({ code, signal })));
}

/** Marker files written by the sleepy fixture: `started-<pid>-<taskId>`. */
export function startedMarks(marks: string): { pid: number; taskId: string }[] {
  return readdirSync(marks).map((f) => {
    const [, pid, ...rest] = f.split('-');
    return { pid: Number(pid), taskId: rest.join('-') };
  });
}

export function killAll(children: ChildProcess[]): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
