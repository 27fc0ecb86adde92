import { spawn } from 'node:child_process';
import { ErrorCode, TaskError } from '../../protocol/errors.js';
import type { TaskContext, TaskHandler } from './types.js';

export interface ExecHandlerOptions {
  /** Working directory of the command (default: the worker's). */
  cwd?: string;
  /** Extra environment variables, added to the worker's own (default: none). */
  env?: Record<string, string>;
  /** Time between SIGTERM and SIGKILL when a task is aborted, in ms (default: 2000). */
  killGraceMs?: number;
  /** How much of the end of stderr a failure message keeps, in bytes (default: 4096). */
  stderrTailBytes?: number;
  /** Largest stdout accepted, in bytes; more fails the task (default: 64 MiB). */
  maxStdoutBytes?: number;
  /** Called with each complete line of stdout (without its newline) as it arrives (default: none). */
  onStdoutLine?: (line: string) => void;
}

const DEFAULTS = {
  killGraceMs: 2_000,
  stderrTailBytes: 4_096,
  maxStdoutBytes: 64 * 1024 * 1024,
} as const;

/**
 * Parses a command's stdout: empty (after trimming) is `null`, JSON is parsed, anything else is
 * returned as the trimmed text.
 */
export function parseCommandOutput(stdout: string): unknown {
  const text = stdout.trim();
  if (text === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/**
 * A handler that runs `command` through the shell once per task. The payload is written to
 * stdin as JSON; stdout is the result (JSON, or the trimmed text when it is not JSON; empty is
 * `null`). A non-zero exit fails the task with the exit code and the end of stderr. On abort
 * (timeout or shutdown) the command's whole process group gets SIGTERM, then SIGKILL after
 * `killGraceMs`. When the command exits, whatever it left running in its process group is
 * killed. The command sees QTUNE_TASK_ID, QTUNE_ATTEMPT and, when set, QTUNE_TASK_KEY
 * and QTUNE_TASK_NAME. On a worker with GPU slots it sees only its task's GPU:
 * CUDA_VISIBLE_DEVICES and QTUNE_GPU_INDEX are its index, CUDA_DEVICE_ORDER is PCI_BUS_ID.
 */
export function execHandler(command: string, options: ExecHandlerOptions = {}): TaskHandler {
  return (payload, ctx) => runCommand(command, payload, ctx, options);
}

/**
 * Runs `command` once for `payload` as {@link execHandler} does and resolves with its parsed
 * stdout; for handlers that build the command per task.
 */
export function runCommand(
  command: string,
  payload: unknown,
  ctx: TaskContext,
  options: ExecHandlerOptions = {},
): Promise<unknown> {
  const opts = {
    ...options,
    killGraceMs: options.killGraceMs ?? DEFAULTS.killGraceMs,
    tailBytes: options.stderrTailBytes ?? DEFAULTS.stderrTailBytes,
    maxStdout: options.maxStdoutBytes ?? DEFAULTS.maxStdoutBytes,
  };
  return new Promise<unknown>((resolve, reject) => {
    if (ctx.signal.aborted) return reject(abortReason(ctx.signal, command));
    const env: Record<string, string | undefined> = {
      ...process.env,
      ...opts.env,
      QTUNE_TASK_ID: ctx.taskId,
      QTUNE_ATTEMPT: String(ctx.attempt),
    };
    if (ctx.key !== undefined) env.QTUNE_TASK_KEY = ctx.key;
    if (ctx.task !== undefined) env.QTUNE_TASK_NAME = ctx.task;
    if (ctx.gpu !== undefined) {
      // nvidia-smi numbers GPUs in PCI bus order; CUDA's default order may differ.
      env.CUDA_DEVICE_ORDER = 'PCI_BUS_ID';
      env.CUDA_VISIBLE_DEVICES = String(ctx.gpu.index);
      env.QTUNE_GPU_INDEX = String(ctx.gpu.index);
    }

    // detached: the child leads its own process group, so kill(-pid) reaches its children too.
    const child = spawn(command, {
      shell: true,
      detached: true,
      cwd: opts.cwd,
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });

    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let partialLine = '';
    let stderrTail = Buffer.alloc(0);
    let failure: Error | undefined;
    let killTimer: NodeJS.Timeout | undefined;
    let settled = false;

    const killGroup = (signal: NodeJS.Signals): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, signal);
      } catch {
        // The group is already gone.
      }
    };
    const terminate = (reason: Error): void => {
      failure ??= reason;
      killGroup('SIGTERM');
      killTimer ??= setTimeout(() => killGroup('SIGKILL'), opts.killGraceMs);
      killTimer.unref();
    };
    const onAbort = (): void => terminate(abortReason(ctx.signal, command));
    ctx.signal.addEventListener('abort', onAbort, { once: true });

    child.stdout.on('data', (chunk: Buffer) => {
      stdoutBytes += chunk.length;
      if (stdoutBytes > opts.maxStdout) {
        terminate(
          new TaskError(
            ErrorCode.HandlerFailed,
            `command "${command}": stdout exceeded ${opts.maxStdout} bytes`,
            { retry: false },
          ),
        );
        return;
      }
      stdout.push(chunk);
      if (opts.onStdoutLine) {
        const lines = (partialLine + chunk.toString('utf8')).split('\n');
        partialLine = lines.pop() ?? '';
        for (const line of lines) opts.onStdoutLine(line.replace(/\r$/, ''));
      }
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderrTail = Buffer.concat([stderrTail, chunk]);
      if (stderrTail.length > opts.tailBytes * 2) stderrTail = stderrTail.subarray(-opts.tailBytes);
    });
    // A command that does not read its stdin closes the pipe early: not an error.
    child.stdin.on('error', () => {});

    child.on('error', (err) => {
      if (settled) return;
      settled = true;
      cleanup();
      reject(
        new TaskError(ErrorCode.HandlerFailed, `command "${command}": ${err.message}`, {
          cause: err,
        }),
      );
    });
    // The command is done: whatever it left running in its group (background jobs that may
    // still hold stdout open) is killed, so a task never leaks processes or hangs on them.
    child.on('exit', () => killGroup('SIGKILL'));
    child.on('close', (code, signal) => {
      if (settled) return;
      settled = true;
      cleanup();
      if (opts.onStdoutLine && partialLine !== '') opts.onStdoutLine(partialLine);
      if (failure) return reject(failure);
      if (code === 0) return resolve(parseCommandOutput(Buffer.concat(stdout).toString('utf8')));
      const how =
        code !== null ? `exited with code ${code}` : `was killed by ${signal ?? 'a signal'}`;
      const tail = stderrTail.subarray(-opts.tailBytes).toString('utf8').trim();
      reject(
        new TaskError(
          ErrorCode.HandlerFailed,
          `command "${command}" ${how}${tail ? `: ${tail}` : ' (stderr empty)'}`,
        ),
      );
    });

    function cleanup(): void {
      ctx.signal.removeEventListener('abort', onAbort);
      if (killTimer) clearTimeout(killTimer);
    }

    let input: string;
    try {
      input = `${JSON.stringify(payload) ?? 'null'}\n`;
    } catch (err) {
      terminate(
        new TaskError(ErrorCode.HandlerFailed, `command "${command}": payload is not JSON`, {
          cause: err,
          retry: false,
        }),
      );
      return;
    }
    child.stdin.end(input);
  });
}

function abortReason(signal: AbortSignal, command: string): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  return new TaskError(ErrorCode.HandlerFailed, `command "${command}" was aborted`);
}
