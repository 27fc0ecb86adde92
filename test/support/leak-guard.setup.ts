/**
 * Fails a test file that leaves a child process, a listening server, an open connection or an
 * open SQLite handle behind (see leaks.ts for what counts and what is exempt). Registered in
 * vitest.config.ts as a setup file: its `afterAll` runs after the file's own ones, once the file
 * had its chance to clean up. A leaked child process is killed after it is reported.
 */
import { afterAll, beforeAll } from 'vitest';
import { killLeakedProcesses, leaksSince, snapshot, type Resources } from './leaks.js';
import { waitFor } from './wait.js';

/** How long things that were closed may take to go (a process exiting, a socket closing). */
const GRACE_MS = 5_000;

let before: Resources;

beforeAll(() => {
  before = snapshot();
});

afterAll(async () => {
  let leaks: string[] = [];
  try {
    await waitFor(() => (leaks = leaksSince(before)).length === 0, GRACE_MS, 'no leaks');
  } catch {
    killLeakedProcesses(before);
    throw new Error(
      `this test file left behind:\n  ${leaks.join('\n  ')}\n` +
        'stop, close or kill them in the test or its afterEach/afterAll',
    );
  }
}, GRACE_MS + 5_000);
