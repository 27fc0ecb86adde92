/**
 * Asynchronous successive halving (ASHA, Li et al. 2020), with Optuna's promotion rule. Rung k
 * sits at resource `minResource · η^(s + k)` (η the reduction factor, s the minimum
 * early-stopping rate). The first report of a trial at a step at or beyond a rung's resource
 * records the reported value in that rung (in every rung it has passed, if it skipped some), and
 * the trial continues only if it ranks in the top 1/η of the values recorded there so far,
 * itself included: with n values, it must be no worse than the k-th lowest, k = max(1, ⌊n/η⌋).
 * So the first trial to reach a rung always continues, and until a rung holds η values a trial
 * continues only by matching or beating the best there. Decisions are final: a pruned trial
 * stays pruned. No trial ever waits for a promotion, so workers never idle.
 */
import { PruneDecision, type FinishedTrial, type Pruner } from '../contract.js';
import { checkStep, insertSorted, option } from './common.js';

export interface SuccessiveHalvingPrunerOptions {
  /** Resource (step) of the lowest rung when the minimum early-stopping rate is 0 (default: 1). */
  minResource?: number;
  /** η: each rung keeps the best 1/η of its trials and sits at η times the resource of the one below (default: 3). */
  reductionFactor?: number;
  /** s: the lowest rung sits at `minResource · η^s` (default: 0). */
  minEarlyStoppingRate?: number;
  /**
   * Steps of a full trial. Rungs at or above it are dropped, since stopping a trial that has
   * spent its budget saves nothing (default: none; rungs go on without end).
   */
  maxResource?: number;
}

/** Marks a running trial that was pruned. */
const PRUNED = -1;
const OWNER = 'SuccessiveHalvingPruner';

/** Asynchronous successive halving: keeps the top 1/η of each rung (see above). */
export class SuccessiveHalvingPruner implements Pruner {
  readonly #minResource: number;
  readonly #eta: number;
  readonly #rate: number;
  readonly #rungCount: number;
  /** Values recorded in each rung, ascending. */
  readonly #rungs: number[][] = [];
  /** For each running trial, the next rung it will be recorded in, or PRUNED. */
  readonly #next = new Map<number, number>();

  /** Throws `InputError` for an option of the wrong kind. */
  constructor(options: SuccessiveHalvingPrunerOptions = {}) {
    this.#minResource = option(OWNER, 'minResource', options.minResource, 1, 'positive');
    this.#eta = option(OWNER, 'reductionFactor', options.reductionFactor, 3, 'factor');
    this.#rate = option(OWNER, 'minEarlyStoppingRate', options.minEarlyStoppingRate, 0, 'count');
    const maxResource = option(OWNER, 'maxResource', options.maxResource, Infinity, 'positive');
    let count = 0;
    if (maxResource === Infinity) count = Infinity;
    else while (this.rungResource(count) < maxResource) count++;
    this.#rungCount = count;
  }

  /** Resource (step) of rung `k`, counted from 0. */
  rungResource(k: number): number {
    return this.#minResource * this.#eta ** (this.#rate + k);
  }

  /** Rungs that decide (below `maxResource`); Infinity without `maxResource`. */
  get rungCount(): number {
    return this.#rungCount;
  }

  /** Values recorded in rung `k` so far, ascending. */
  rungValues(k: number): readonly number[] {
    return this.#rungs[k] ?? [];
  }

  /**
   * Records `value` in every rung the trial reached for the first time at this step and prunes
   * it when it is outside the top 1/η of one of them. A NaN value at a rung prunes the trial
   * without recording it.
   */
  report(number: number, step: number, value: number): PruneDecision {
    checkStep(OWNER, number, step);
    let k = this.#next.get(number) ?? 0;
    if (k === PRUNED) return PruneDecision.Prune;
    while (k < this.#rungCount && step >= this.rungResource(k)) {
      if (Number.isNaN(value)) {
        this.#next.set(number, PRUNED);
        return PruneDecision.Prune;
      }
      let rung = this.#rungs[k];
      if (rung === undefined) {
        rung = [];
        this.#rungs[k] = rung;
      }
      insertSorted(rung, value);
      const keep = Math.max(1, Math.floor(rung.length / this.#eta));
      if (value > (rung[keep - 1] as number)) {
        this.#next.set(number, PRUNED);
        return PruneDecision.Prune;
      }
      k++;
    }
    this.#next.set(number, k);
    return PruneDecision.Continue;
  }

  tell(trial: FinishedTrial): void {
    this.#next.delete(trial.number);
  }
}
