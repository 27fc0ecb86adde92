/** Helpers shared by the pruners: option checks, step checks, sorted insertion. */
import { InputError } from '../../protocol/errors.js';

const kinds = {
  count: ['a non-negative integer', (v: number) => Number.isInteger(v) && v >= 0],
  positiveInt: ['a positive integer', (v: number) => Number.isInteger(v) && v >= 1],
  positive: ['a positive number', (v: number) => Number.isFinite(v) && v > 0],
  factor: ['an integer of at least 2', (v: number) => Number.isInteger(v) && v >= 2],
} as const;

/** What an option must be. */
export type OptionKind = keyof typeof kinds;

/**
 * `value` when it is a number of `kind`, `fallback` when it is undefined; throws `InputError`
 * naming `owner` and `name` otherwise.
 */
export function option(
  owner: string,
  name: string,
  value: unknown,
  fallback: number,
  kind: OptionKind,
): number {
  if (value === undefined) return fallback;
  const [what, ok] = kinds[kind];
  if (typeof value !== 'number' || !ok(value)) {
    throw new InputError(`${owner} ${name} must be ${what} (got ${JSON.stringify(value)})`);
  }
  return value;
}

/** Throws `InputError` unless `step` is a finite number ≥ 0. */
export function checkStep(owner: string, number: number, step: number): void {
  if (!(Number.isFinite(step) && step >= 0)) {
    throw new InputError(
      `${owner}: trial ${number} reported step ${step}; a step must be a number ≥ 0`,
    );
  }
}

/** Inserts `value` into ascending `sorted` after any equal values, by binary search. */
export function insertSorted(sorted: number[], value: number): void {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] as number) <= value) lo = mid + 1;
    else hi = mid;
  }
  sorted.splice(lo, 0, value);
}
