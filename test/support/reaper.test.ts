import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { sleep, waitFor } from './wait.js';

const REAPER = pathToFileURL(join(import.meta.dirname, 'reaper.mjs')).href;
const dirs: string[] = [];

afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * Starts a node process that arms a reaper touching `marker`, runs `then` (JavaScript), and
 * prints "armed". Resolves with the child once it printed.
 */
async function child(marker: string, then: string) {
  const code = `
    import { reapOnExit } from ${JSON.stringify(REAPER)};
    const reaper = reapOnExit('touch "$MARKER"', { ...process.env, MARKER: ${JSON.stringify(marker)} });
    console.log('armed');
    ${then}
  `;
  const p = spawn(process.execPath, ['--input-type=module', '-e', code], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    p.stdout.on('data', (b: Buffer) => {
      if (b.toString().includes('armed')) resolve();
    });
    p.once('exit', (c) => reject(new Error(`child exited (${c}) before arming`)));
  });
  const exited = new Promise<number | null>((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) resolve(p.exitCode);
    else p.once('exit', (c) => resolve(c));
  });
  return { p, exited };
}

function marker(): string {
  const dir = mkdtempSync(join(tmpdir(), 'qtune-reaper-'));
  dirs.push(dir);
  return join(dir, 'reaped');
}

describe('reapOnExit (test support)', () => {
  it('runs the cleanup after its process is killed with SIGKILL', async () => {
    const m = marker();
    const { p, exited } = await child(m, 'setInterval(() => {}, 1000);');
    expect(existsSync(m)).toBe(false);
    p.kill('SIGKILL');
    await exited;
    await waitFor(() => existsSync(m), 5_000, 'the cleanup to run');
  });

  it('does not keep its process alive, and cleans up after a normal exit', async () => {
    const m = marker();
    const { exited } = await child(m, '');
    // Nothing else holds the event loop: the child ends by itself.
    expect(await exited).toBe(0);
    await waitFor(() => existsSync(m), 5_000, 'the cleanup to run');
  });

  it('runs nothing once cancelled', async () => {
    const m = marker();
    const { exited } = await child(m, 'reaper.cancel();');
    expect(await exited).toBe(0);
    // A reaper that was not cancelled fires within milliseconds of the exit (test above).
    await sleep(1_000);
    expect(existsSync(m)).toBe(false);
  });
});
