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

/**
 * `--metrics-port N` and `--metrics-host HOST` of long-running commands: where to serve
 * Prometheus metrics (off by default; this machine only unless a host is given).
 */
export function metricsOptions(): Option[] {
  return [
    new Option(
      '--metrics-port <port>',
      'serve Prometheus metrics at http://HOST:PORT/metrics (0: a free port, logged) (default: off)',
    ).argParser(portNumber),
    new Option(
      '--metrics-host <host>',
      'interface the metrics endpoint binds (0.0.0.0 for every interface)',
    ).default('127.0.0.1'),
  ];
}

/** Commander parser for a TCP port (0 to 65535). */
export function portNumber(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isInteger(n) || n > 65_535) {
    throw new InvalidArgumentError(`"${value}" is not a TCP port (0 to 65535)`);
  }
  return n;
}
