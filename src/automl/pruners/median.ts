/**
 * The median stopping rule, with Optuna's semantics: at step s a trial is pruned when the best
 * value it has reported so far is worse than the median of the values that *completed* trials
 * reported at step s. Only completed trials make up the median (pruned ones would drag it
 * towards the bad end), so the values of a running trial join the per-step sorted arrays when it
 * completes; a report then costs a map lookup, not a scan of the history.
 */
import { PruneDecision, type FinishedTrial, type Pruner } from '../contract.js';
import { checkStep, insertSorted, option } from './common.js';

export interface MedianPrunerOptions {
  /** Completed trials needed before any trial is pruned (default: 5). */
  startupTrials?: number;
  /** Steps below this are never pruned (default: 0). */
  warmupSteps?: number;
  /**
   * A trial is judged at most once per interval of this many steps, counted from
   * `warmupSteps`: at its first report at or after each interval's start (default: 1).
   */
  intervalSteps?: number;
  /** Completed trials that must have reported step s before a trial is judged at s (default: 1). */
  minTrialsAtStep?: number;
}

interface RunningTrial {
  /** Reported values by step; a repeated step keeps its first value. */
  readonly values: Map<number, number>;
  /** Best (lowest) non-NaN value so far; NaN while there is none. */
  best: number;
  /** Highest step reported; -1 before the first report. */
  lastStep: number;
}

const OWNER = 'MedianPruner';

/** Prunes a trial whose best value so far is worse than completed trials' median at its step. */
export class MedianPruner implements Pruner {
  readonly #startupTrials: number;
  readonly #warmupSteps: number;
  readonly #intervalSteps: number;
  readonly #minTrialsAtStep: number;
  /** Values completed trials reported, ascending, by step. */
  readonly #atStep = new Map<number, number[]>();
  readonly #running = new Map<number, RunningTrial>();
  #completed = 0;

  /** Throws `InputError` for an option of the wrong kind. */
  constructor(options: MedianPrunerOptions = {}) {
    this.#startupTrials = option(OWNER, 'startupTrials', options.startupTrials, 5, 'count');
    this.#warmupSteps = option(OWNER, 'warmupSteps', options.warmupSteps, 0, 'count');
    this.#intervalSteps = option(OWNER, 'intervalSteps', options.intervalSteps, 1, 'positiveInt');
    this.#minTrialsAtStep = option(
      OWNER,
      'minTrialsAtStep',
      options.minTrialsAtStep,
      1,
      'positiveInt',
    );
  }

  /** Trials completed so far. */
  get completedTrials(): number {
    return this.#completed;
  }

  /**
   * Records the report and prunes when the trial's best value so far is above the median of
   * completed trials at `step`. A trial whose values are all NaN is pruned once it is judged.
   */
  report(number: number, step: number, value: number): PruneDecision {
    checkStep(OWNER, number, step);
    let trial = this.#running.get(number);
    if (trial === undefined) {
      trial = { values: new Map(), best: NaN, lastStep: -1 };
      this.#running.set(number, trial);
    }
    const previousStep = trial.lastStep;
    if (!trial.values.has(step)) {
      trial.values.set(step, value);
      if (!Number.isNaN(value) && !(trial.best <= value)) trial.best = value;
    }
    trial.lastStep = Math.max(trial.lastStep, step);

    if (this.#completed === 0 || this.#completed < this.#startupTrials)
      return PruneDecision.Continue;
    if (step < this.#warmupSteps) return PruneDecision.Continue;
    const intervalStart =
      Math.floor((step - this.#warmupSteps) / this.#intervalSteps) * this.#intervalSteps +
      this.#warmupSteps;
    if (previousStep >= intervalStart) return PruneDecision.Continue;
    if (Number.isNaN(trial.best)) return PruneDecision.Prune;
    const values = this.#atStep.get(step);
    if (values === undefined || values.length < this.#minTrialsAtStep)
      return PruneDecision.Continue;
    return trial.best > median(values) ? PruneDecision.Prune : PruneDecision.Continue;
  }

  tell(trial: FinishedTrial): void {
    const running = this.#running.get(trial.number);
    this.#running.delete(trial.number);
    if (trial.state !== 'complete') return;
    this.#completed++;
    if (running === undefined) return;
    for (const [step, value] of running.values) {
      if (Number.isNaN(value)) continue;
      let values = this.#atStep.get(step);
      if (values === undefined) {
        values = [];
        this.#atStep.set(step, values);
      }
      insertSorted(values, value);
    }
  }
}

/** Median of a non-empty ascending array (the mean of the middle two for an even length). */
function median(sorted: readonly number[]): number {
  const mid = (sorted.length - 1) / 2;
  const lo = sorted[Math.floor(mid)] as number;
  const hi = sorted[Math.ceil(mid)] as number;
  return lo === hi ? lo : (lo + hi) / 2;
}
