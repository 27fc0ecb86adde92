import { InvalidArgumentError } from 'commander';
import { durationMs } from '../protocol/duration.js';

/** Parses `1500`, `1500ms`, `30s`, `5m`, `2h` into milliseconds; commander argument parser. */
export function parseDuration(value: string): number {
  const ms = durationMs(value);
  if (ms === undefined) {
    throw new InvalidArgumentError(`"${value}" is not a duration (e.g. 500ms, 30s, 5m, 2h)`);
  }
  return ms;
}

/** Commander parser for an integer ≥ `min`. */
export function intAtLeast(min: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) {
      throw new InvalidArgumentError(`"${value}" is not an integer ≥ ${min}`);
    }
    return n;
  };
}
