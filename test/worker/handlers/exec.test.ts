import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ErrorCode, TaskError } from '../../../src/protocol/errors.js';
import { execHandler, parseCommandOutput } from '../../../src/worker/handlers/exec.js';
import { fakeContext } from '../helpers.js';

/** True when `pid` no longer runs (absent, or a zombie waiting to be reaped). */
function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3, after the parenthesised command name, is the state.
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

async function readPid(file: string): Promise<number> {
  await vi.waitFor(
    () => {
      if (!existsSync(file) || readFileSync(file, 'utf8').trim() === '')
        throw new Error('no pid yet');
    },
    { timeout: 5_000, interval: 10 },
  );
  return Number(readFileSync(file, 'utf8').trim());
}

describe('execHandler', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'qtune-exec-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes the payload to stdin as JSON and parses stdout as JSON', async () => {
    const handler = execHandler('cat');
    const payload = { prompt: 'hi', n: [1, 2, 3], nested: { ok: true } };
    await expect(handler(payload, fakeContext())).resolves.toEqual(payload);
  });

  it('passes the task id, attempt and key in the environment', async () => {
    const handler = execHandler(
      'printf \'{"id":"%s","attempt":%s,"key":"%s"}\' "$QTUNE_TASK_ID" "$QTUNE_ATTEMPT" "$QTUNE_TASK_KEY"',
    );
    const result = await handler(null, fakeContext({ taskId: 'abc', attempt: 2, key: 'k-1' }));
    expect(result).toEqual({ id: 'abc', attempt: 2, key: 'k-1' });
  });

  it("shows the command only its task's GPU, in PCI bus order, and no GPU setting without one", async () => {
    const handler = execHandler(
      'printf \'%s|%s|%s\' "${CUDA_VISIBLE_DEVICES-unset}" "${CUDA_DEVICE_ORDER-unset}" "${QTUNE_GPU_INDEX-unset}"',
      { env: { CUDA_VISIBLE_DEVICES: '0,1,2,3' } },
    );
    const gpu = { index: 3, name: 'NVIDIA H100 80GB HBM3' };
    await expect(handler(null, fakeContext({ gpu }))).resolves.toBe('3|PCI_BUS_ID|3');
    await expect(handler(null, fakeContext())).resolves.toBe('0,1,2,3|unset|unset');
  });

  it('returns trimmed text for non-JSON stdout and null for empty stdout', async () => {
    await expect(execHandler('echo "  plain words  "')(null, fakeContext())).resolves.toBe(
      'plain words',
    );
    await expect(execHandler('true')(null, fakeContext())).resolves.toBeNull();
    expect(parseCommandOutput('\n 42 \n')).toBe(42);
  });

  it('fails with HANDLER_FAILED, the exit code and the end of stderr on a non-zero exit', async () => {
    const handler = execHandler('echo "model file missing: /x.pt" >&2; exit 3');
    const error = await handler({}, fakeContext()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskError);
    expect((error as TaskError).code).toBe(ErrorCode.HandlerFailed);
    expect((error as TaskError).message).toMatch(/exited with code 3/);
    expect((error as TaskError).message).toContain('model file missing: /x.pt');
  });

  it('keeps only the last few KB of a long stderr', async () => {
    const handler = execHandler(
      "head -c 50000 /dev/zero | tr '\\0' a >&2; echo THE-END >&2; exit 1",
      { stderrTailBytes: 1024 },
    );
    const error = (await handler({}, fakeContext()).catch((e: unknown) => e)) as Error;
    expect(error.message).toContain('THE-END');
    expect(error.message.length).toBeLessThan(1024 + 200);
  });

  it('kills the whole process group on abort, then rejects with the abort reason', async () => {
    const pidFile = join(dir, 'pid');
    const handler = execHandler('sleep 30 & echo $! > "$PID_FILE"; wait', {
      env: { PID_FILE: pidFile },
    });
    const controller = new AbortController();
    const running = handler({}, fakeContext({ signal: controller.signal }));
    const sleepPid = await readPid(pidFile);
    expect(processGone(sleepPid)).toBe(false);
    const reason = new TaskError(ErrorCode.Timeout, 'ran past its time limit');
    controller.abort(reason);
    await expect(running).rejects.toBe(reason);
    await vi.waitFor(() => expect(processGone(sleepPid)).toBe(true), {
      timeout: 5_000,
      interval: 10,
    });
  });

  it('sends SIGKILL after the grace period to a command that ignores SIGTERM', async () => {
    const pidFile = join(dir, 'pid');
    const handler = execHandler('trap \'\' TERM; sleep 30 & echo $! > "$PID_FILE"; wait', {
      env: { PID_FILE: pidFile },
      killGraceMs: 100,
    });
    const controller = new AbortController();
    const running = handler({}, fakeContext({ signal: controller.signal }));
    const sleepPid = await readPid(pidFile);
    controller.abort(new TaskError(ErrorCode.Timeout, 'too slow'));
    await expect(running).rejects.toThrow('too slow');
    await vi.waitFor(() => expect(processGone(sleepPid)).toBe(true), {
      timeout: 5_000,
      interval: 10,
    });
  });

  it('kills background jobs the command leaves behind when it exits', async () => {
    const pidFile = join(dir, 'pid');
    const handler = execHandler(
      'sleep 30 >/dev/null 2>&1 & echo $! > "$PID_FILE"; echo \'{"done":true}\'',
      {
        env: { PID_FILE: pidFile },
      },
    );
    await expect(handler({}, fakeContext())).resolves.toEqual({ done: true });
    const sleepPid = await readPid(pidFile);
    await vi.waitFor(() => expect(processGone(sleepPid)).toBe(true), {
      timeout: 5_000,
      interval: 10,
    });
  });

  it('does not start the command when the signal is already aborted', async () => {
    const marker = join(dir, 'ran');
    const controller = new AbortController();
    controller.abort(new Error('shutting down'));
    const handler = execHandler(`touch "${marker}"`);
    await expect(handler({}, fakeContext({ signal: controller.signal }))).rejects.toThrow(
      'shutting down',
    );
    expect(existsSync(marker)).toBe(false);
  });
});
