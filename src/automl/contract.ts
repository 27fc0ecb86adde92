/**
 * The contracts between the experiment scheduler and the pure search logic. Everything
 * here *minimizes*: the scheduler negates values of a maximized objective before they
 * reach a sampler or pruner. Samplers and pruners are deterministic for a given seed and
 * the same sequence of calls, and rebuild their state from history by replaying `tell`
 * (and `report`) calls in the original order.
 */
import type { Params } from './space.js';

/** How a trial ended. */
export const TrialState = {
  Complete: 'complete',
  Pruned: 'pruned',
  Failed: 'failed',
} as const;
export type TrialState = (typeof TrialState)[keyof typeof TrialState];

/** A trial that was suggested and has not finished yet. */
export interface PendingTrial {
  /** 0-based sequence number in the experiment. */
  readonly number: number;
  readonly params: Params;
}

/** A trial that finished. */
export interface FinishedTrial {
  readonly number: number;
  readonly params: Params;
  readonly state: TrialState;
  /**
   * Complete: the final objective value (minimized). Pruned: the last reported
   * intermediate value, if any. Failed: absent.
   */
  readonly value?: number;
  /** The step of `value` for a pruned trial (its last report). */
  readonly step?: number;
}

/** Proposes parameters for new trials from what finished before. */
export interface Sampler {
  /**
   * Parameters for trial `number`, knowing the trials still running (for constant-liar
   * style strategies), or `null` when the sampler has nothing left to propose (a finished
   * grid). Always satisfies `space.validate`.
   */
  suggest(number: number, running: readonly PendingTrial[]): Params | null;
  /** Records a finished trial; called once per trial, in the order trials finished. */
  tell(trial: FinishedTrial): void;
}

/** What a pruner tells a running trial after a report. */
export const PruneDecision = {
  Continue: 'continue',
  Prune: 'prune',
} as const;
export type PruneDecision = (typeof PruneDecision)[keyof typeof PruneDecision];

/** Decides from intermediate reports whether running trials should stop early. */
export interface Pruner {
  /**
   * Records that trial `number` reached `step` (a resource count such as epochs, ≥ 1)
   * with intermediate `value` (minimized), and decides whether it should stop.
   */
  report(number: number, step: number, value: number): PruneDecision;
  /** Records a finished trial; called once per trial, in the order trials finished. */
  tell(trial: FinishedTrial): void;
}
