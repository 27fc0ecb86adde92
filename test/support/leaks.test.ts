import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { leaksSince, snapshot } from './leaks.js';
import { reapOnExit } from './reaper.mjs';
import { waitFor } from './wait.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe('leak guard (test support)', () => {
  it('names a child process left running, and forgets it once it exited', async () => {
    const before = snapshot();
    const child = spawn('sleep', ['30'], { stdio: 'ignore' });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    cleanups.push(() => child.kill('SIGKILL'));
    await waitFor(() => leaksSince(before).length > 0, 5_000, 'the child to be seen');
    expect(leaksSince(before)).toContain(`child process ${child.pid} (sleep 30)`);
    child.kill('SIGKILL');
    await exited;
    await waitFor(() => leaksSince(before).length === 0, 5_000, 'no leaks');
  });

  it('names a server still listening and a connection still open', async () => {
    const before = snapshot();
    const server = createServer((s) => cleanups.push(() => s.destroy()));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => new Promise((resolve) => server.close(resolve)));
    const { port } = server.address() as AddressInfo;
    const socket = connect(port, '127.0.0.1');
    cleanups.push(() => socket.destroy());
    await new Promise((resolve) => socket.once('connect', resolve));
    const leaks = leaksSince(before);
    expect(leaks).toContain(`server listening on 127.0.0.1:${port}`);
    expect(leaks).toContain(`open socket to 127.0.0.1:${port}`);
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await waitFor(() => leaksSince(before).length === 0, 5_000, 'no leaks');
  });

  it('names an SQLite file still open (a broker or store handle not closed)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qtune-leaks-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const before = snapshot();
    const db = new Database(join(dir, 'broker.db'));
    cleanups.push(() => db.open && db.close());
    expect(leaksSince(before).some((l) => l.startsWith(`open SQLite file ${dir}/broker.db`))).toBe(
      true,
    );
    db.close();
    expect(leaksSince(before)).toEqual([]);
  });

  it('does not count the cleanup shell of a reaper, which outlives what it guards by design', async () => {
    const before = snapshot();
    const reaper = reapOnExit('true');
    cleanups.push(() => reaper.cancel());
    expect(leaksSince(before)).toEqual([]);
  });
});

describe('leak guard in a test run', () => {
  it('fails a test file that leaves a child process behind, naming it', async () => {
    const root = join(import.meta.dirname, '..', '..');
    const run = spawn(
      process.execPath,
      [
        join(root, 'node_modules/vitest/vitest.mjs'),
        'run',
        '--config',
        join(root, 'test/fixtures/leaky.vitest.config.ts'),
      ],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    cleanups.push(() => run.kill('SIGKILL'));
    let out = '';
    run.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    run.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    const code = await new Promise((resolve) => run.once('exit', resolve));
    expect(code, out).not.toBe(0);
    expect(out).toMatch(/this test file left behind:\s+child process \d+ \(sleep 37\)/);
  }, 60_000);
});
