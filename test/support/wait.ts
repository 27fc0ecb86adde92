/**
 * Waiting in tests: the one `waitFor` every test uses, and `sleep`. A test waits for a
 * positive signal (a count, a stats read, a line printed) with `waitFor`; `sleep` is for
 * pacing a scenario, never for proving that something did not happen.
 */

/** Bound for something that must happen, generous so that a loaded machine still passes. */
export const WAIT_MS = 10_000;

/** How often `waitFor` asks again. */
const POLL_MS = 20;

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `condition` until it returns a truthy value and resolves with that value; rejects
 * naming `what` once `timeoutMs` (default: 10000) have passed. A throw from `condition` ends
 * the wait at once with that error (use it to fail fast, for example when a child exited).
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  timeoutMs = WAIT_MS,
  what = 'condition',
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`waitFor: ${what} not met within ${timeoutMs} ms`);
    await sleep(POLL_MS);
  }
}
