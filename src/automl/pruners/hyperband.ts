/**
 * Hyperband over asynchronous successive halving, as Optuna builds it. There are
 * `⌊log_η(maxResource / minResource)⌋ + 1` brackets; bracket b is a `SuccessiveHalvingPruner`
 * with minimum early-stopping rate b, so bracket 0 prunes hardest and the last one barely or
 * never. A trial's bracket is fixed by a hash of its number (and the seed), drawn with weights
 * equal to Hyperband's trial counts per bracket, `⌈B · η^(B−1−b) / (B − b)⌉` for B brackets;
 * each bracket ranks only its own trials.
 */
import { InputError } from '../../protocol/errors.js';
import type { FinishedTrial, PruneDecision, Pruner } from '../contract.js';
import { SuccessiveHalvingPruner } from './asha.js';
import { option } from './common.js';

export interface HyperbandPrunerOptions {
  /** Resource (step) of the lowest rung of the most aggressive bracket (default: 1). */
  minResource?: number;
  /** Steps of a full trial; sets the number of brackets. Required: its absence throws `InputError`. */
  maxResource?: number;
  /** η of every bracket (default: 3). */
  reductionFactor?: number;
  /** Seed of the bracket assignment, so two experiments need not share it (default: 0). */
  seed?: number;
}

const OWNER = 'HyperbandPruner';

/** Hyperband: trials spread over successive-halving brackets of every aggressiveness. */
export class HyperbandPruner implements Pruner {
  readonly #seedHash: number;
  readonly #budgets: readonly number[];
  readonly #total: number;
  readonly #brackets: readonly SuccessiveHalvingPruner[];

  /** Throws `InputError` when `maxResource` is missing or below `minResource`, or an option is of the wrong kind. */
  constructor(options: HyperbandPrunerOptions) {
    const minResource = option(OWNER, 'minResource', options.minResource, 1, 'positive');
    if (options.maxResource === undefined) {
      throw new InputError(`${OWNER} needs maxResource, the steps of a full trial`);
    }
    const maxResource = option(OWNER, 'maxResource', options.maxResource, 0, 'positive');
    const eta = option(OWNER, 'reductionFactor', options.reductionFactor, 3, 'factor');
    const seed = options.seed ?? 0;
    if (typeof seed !== 'number' || !Number.isInteger(seed)) {
      throw new InputError(`${OWNER} seed must be an integer (got ${JSON.stringify(seed)})`);
    }
    if (maxResource < minResource) {
      throw new InputError(
        `${OWNER} maxResource (${maxResource}) must be at least minResource (${minResource})`,
      );
    }
    // Brackets: the rates b with minResource·η^b ≤ maxResource (a relative margin absorbs rounding).
    let count = 1;
    while (minResource * eta ** count <= maxResource * (1 + 1e-12)) count++;
    this.#budgets = Array.from({ length: count }, (_, b) => {
      const s = count - 1 - b;
      return Math.ceil((count * eta ** s) / (s + 1));
    });
    this.#total = this.#budgets.reduce((a, b) => a + b, 0);
    this.#brackets = this.#budgets.map(
      (_, b) =>
        new SuccessiveHalvingPruner({
          minResource,
          reductionFactor: eta,
          minEarlyStoppingRate: b,
          maxResource,
        }),
    );
    this.#seedHash = fmix32((seed ^ 0x48795062) >>> 0);
  }

  /** Number of brackets. */
  get bracketCount(): number {
    return this.#brackets.length;
  }

  /** Relative share of trials each bracket gets. */
  get bracketBudgets(): readonly number[] {
    return this.#budgets;
  }

  /** The bracket of trial `number`, from 0 (prunes hardest) to `bracketCount - 1`. */
  bracketOf(number: number): number {
    let h = fmix32((this.#seedHash ^ fmix32(number >>> 0)) >>> 0) % this.#total;
    for (let b = 0; b < this.#budgets.length; b++) {
      h -= this.#budgets[b] as number;
      if (h < 0) return b;
    }
    return this.#budgets.length - 1;
  }

  /** The successive-halving pruner of bracket `b`. */
  bracket(b: number): SuccessiveHalvingPruner {
    const pruner = this.#brackets[b];
    if (pruner === undefined) throw new RangeError(`${OWNER}: no bracket ${b}`);
    return pruner;
  }

  report(number: number, step: number, value: number): PruneDecision {
    return this.bracket(this.bracketOf(number)).report(number, step, value);
  }

  tell(trial: FinishedTrial): void {
    this.bracket(this.bracketOf(trial.number)).tell(trial);
  }
}

/** MurmurHash3's 32-bit finalizer: a bijective mix of a uint32. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
