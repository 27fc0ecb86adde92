import { setTimeout as sleep } from 'node:timers/promises';
import { findExperiment } from '../scheduler/stored.js';
import type { ExperimentStatus, ExperimentStore } from '../store/experiments.js';

/** What asking an experiment to stop did. */
export interface StopRequest {
  experiment: string;
  /** Its status before the request. */
  status: ExperimentStatus;
  /** False when it had already ended (`done` or `stopped`): nothing was asked. */
  requested: boolean;
}

/**
 * Asks experiment `name` to stop: its status becomes `stopping`, which its scheduler (now or
 * when resumed) sees, and then it publishes no new trial and tells running ones to stop at
 * their next report. An experiment already `done` or `stopped` is left as it is.
 * `NotFoundError` (with the closest name) for an unknown one.
 */
export async function requestStop(store: ExperimentStore, name: string): Promise<StopRequest> {
  const exp = await findExperiment(store, name);
  if (exp.status === 'done' || exp.status === 'stopped') {
    return { experiment: name, status: exp.status, requested: false };
  }
  await store.setExperimentStatus(name, 'stopping');
  return { experiment: name, status: exp.status, requested: true };
}

export interface WaitForStopOptions {
  /** Longest wait in ms. */
  timeoutMs: number;
  /** How often the store is read, in ms (default: 200). */
  pollMs?: number;
}

/**
 * Resolves true once experiment `name` is no longer `stopping` (its scheduler stopped it), or
 * false when it still is after `timeoutMs` (no scheduler runs it: the request stays).
 */
export async function waitForStop(
  store: ExperimentStore,
  name: string,
  options: WaitForStopOptions,
): Promise<boolean> {
  const until = Date.now() + options.timeoutMs;
  for (;;) {
    if ((await store.experimentStatus(name)) !== 'stopping') return true;
    if (Date.now() >= until) return false;
    await sleep(options.pollMs ?? 200);
  }
}
