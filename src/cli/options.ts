import { InvalidArgumentError, Option } from 'commander';
import { durationMs } from '../protocol/duration.js';
import { printable } from '../protocol/names.js';

/**
 * Parses `1500ms`, `30s`, `5m`, `2h` into milliseconds; commander argument parser for every
 * duration flag. A bare number other than 0 is refused: `--timeout 5` reads as five seconds to
 * most people and as five milliseconds to the spec rule, so the flag asks for the unit.
 */
export function parseDuration(value: string): number {
  const trimmed = value.trim();
  if (/^\d+(?:\.\d+)?$/.test(trimmed) && Number(trimmed) !== 0) {
    throw new InvalidArgumentError(
      `"${printable(value)}" has no unit (add a unit: ${trimmed}s, ${trimmed}m; ${trimmed}ms for milliseconds)`,
    );
  }
  const ms = durationMs(trimmed);
  if (ms === undefined) {
    throw new InvalidArgumentError(
      `"${printable(value)}" is not a duration (e.g. 500ms, 30s, 5m, 2h)`,
    );
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

/**
 * `--connect-timeout DURATION` of long-running commands: how long to wait at start for a broker
 * that cannot be reached (RabbitMQ, a gateway) before exiting 3.
 */
export function connectTimeoutOption(): Option {
  return new Option(
    '--connect-timeout <duration>',
    'at start, how long to wait for a RabbitMQ or gateway broker that cannot be reached, retrying with backoff (default: forever; 0: no wait)',
  ).argParser(parseDuration);
}
