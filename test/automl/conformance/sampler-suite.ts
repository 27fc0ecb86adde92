/**
 * One conformance suite for every sampler: it runs unchanged against each implementation of
 * the `Sampler` contract (src/automl/contract.ts) and checks what the scheduler relies on.
 *
 * - Valid params: for every space it accepts, each proposal passes `space.validate` (types,
 *   bounds, steps, choices, and conditional parameters present exactly when active).
 * - Refusal: a space it cannot search is refused when the sampler is built, with an
 *   `InputError` that names the parameter or the limit, never with invalid params later.
 * - Determinism: two instances with the same seed, driven through the same history, propose
 *   the same params.
 * - Replay: a fresh instance told the finished trials of a history, in order (as the scheduler
 *   does on resume), proposes what the instance that lived through the history proposes next.
 *
 * The histories are seeded asynchronous runs: several trials in flight, finishing in random
 * order as complete, pruned or failed, with values a fixed function of their params.
 */
import { describe, expect, it } from 'vitest';
import type { FinishedTrial, PendingTrial, Sampler } from '../../../src/automl/contract.js';
import { Rng } from '../../../src/automl/rng.js';
import {
  SearchSpace,
  type ParamValue,
  type Params,
  type SpaceSpec,
} from '../../../src/automl/space.js';
import { InputError } from '../../../src/protocol/errors.js';

/** One sampler under test. */
export interface SamplerTarget {
  readonly name: string;
  /** Builds the sampler for `space` with `seed`; throws for a space it refuses. */
  create(space: SearchSpace, seed: number): Sampler;
}

/** Named spaces covering every kind of parameter the space module has. */
export const CONFORMANCE_SPACES: Readonly<Record<string, SpaceSpec>> = {
  'uniform, log and stepped floats': {
    x: { type: 'float', low: -3, high: 2.5 },
    lr: { type: 'float', low: 1e-5, high: 0.1, log: true },
    drop: { type: 'float', low: 0, high: 0.5, step: 0.1 },
    // High is not on the step: the highest value is 0.9.
    gap: { type: 'float', low: 0, high: 1, step: 0.3 },
  },
  'plain, stepped and log ints': {
    n: { type: 'int', low: -4, high: 9 },
    units: { type: 'int', low: 16, high: 200, step: 16 },
    batch: { type: 'int', low: 1, high: 1024, log: true },
  },
  'categoricals of strings, numbers and booleans': {
    opt: { type: 'categorical', choices: ['sgd', 'adam', 'rmsprop'] },
    width: { type: 'categorical', choices: [32, 64, 128, 256] },
    bias: { type: 'categorical', choices: [true, false] },
  },
  'conditional parameters, nested': {
    opt: { type: 'categorical', choices: ['sgd', 'adam'] },
    momentum: { type: 'float', low: 0, high: 0.99, when: { opt: 'sgd' } },
    nesterov: { type: 'categorical', choices: [true, false], when: { opt: 'sgd' } },
    dampening: { type: 'float', low: 0, high: 0.5, step: 0.05, when: { nesterov: false } },
    beta: { type: 'float', low: 1e-4, high: 0.1, log: true, when: { opt: ['adam'] } },
    layers: { type: 'int', low: 1, high: 8, step: 2 },
  },
  'single-valued parameters': {
    fixed: { type: 'float', low: 0.5, high: 0.5 },
    one: { type: 'int', low: 3, high: 3 },
    only: { type: 'categorical', choices: ['x'] },
    free: { type: 'float', low: 0, high: 1 },
  },
  'a grid too large to enumerate': Object.fromEntries(
    Array.from({ length: 8 }, (_, i) => [`k${i}`, { type: 'int', low: 0, high: 99 }]),
  ) as SpaceSpec,
};

/** A seeded random space of 1–6 parameters, some with conditions on earlier categoricals. */
export function randomSpace(seed: number): SpaceSpec {
  const rng = new Rng(seed, 7);
  const spec: Record<string, SpaceSpec[string]> = {};
  const parents: { name: string; choices: ParamValue[] }[] = [];
  const count = rng.int(1, 6);
  for (let i = 0; i < count; i++) {
    const name = `p${i}`;
    const parent = parents.length > 0 && rng.next() < 0.5 ? rng.pick(parents) : undefined;
    const when =
      parent === undefined
        ? {}
        : { when: { [parent.name]: parent.choices.filter((_, k) => k === 0 || rng.next() < 0.4) } };
    // A categorical first, more often than not, so that later parameters can depend on it.
    const kind = i === 0 && rng.next() < 0.6 ? 5 : rng.int(0, 5);
    if (kind === 0) {
      const low = Math.round(rng.uniform(-10, 10) * 100) / 100;
      spec[name] = { type: 'float', low, high: low + rng.uniform(0.01, 20), ...when };
    } else if (kind === 1) {
      const low = 10 ** rng.uniform(-6, 0);
      spec[name] = {
        type: 'float',
        low,
        high: low * 10 ** rng.uniform(0.5, 4),
        log: true,
        ...when,
      };
    } else if (kind === 2) {
      const step = rng.pick([0.05, 0.1, 0.25, 0.3]);
      spec[name] = { type: 'float', low: rng.int(-3, 1), high: rng.int(2, 5), step, ...when };
    } else if (kind === 3) {
      const low = rng.int(-50, 50);
      spec[name] = { type: 'int', low, high: low + rng.int(0, 40), step: rng.int(1, 7), ...when };
    } else if (kind === 4) {
      spec[name] = {
        type: 'int',
        low: rng.int(1, 10),
        high: rng.int(11, 5000),
        log: true,
        ...when,
      };
    } else {
      const pool: ParamValue[] = ['a', 'b', 'c', 1, 2.5, -7, true, false];
      const choices = pool.filter(() => rng.next() < 0.45);
      if (choices.length === 0) choices.push(rng.pick(pool));
      spec[name] = { type: 'categorical', choices, ...when };
      parents.push({ name, choices });
    }
  }
  return spec;
}

/** The objective of a trial: a fixed, finite function of its params. */
function objective(params: Params): number {
  let value = 0;
  for (const [name, v] of Object.entries(params)) {
    const x = typeof v === 'number' ? v : typeof v === 'boolean' ? Number(v) : v.length;
    value += Math.sin(x * 1.7 + name.length) + 0.01 * Math.abs(x);
  }
  return value;
}

/** One step of a history: a proposal with the trials running at the time, or a finished trial. */
type Op =
  | {
      readonly kind: 'suggest';
      readonly number: number;
      readonly running: readonly PendingTrial[];
      readonly params: Params | null;
    }
  | { readonly kind: 'tell'; readonly trial: FinishedTrial };

/**
 * Drives `sampler` through a seeded asynchronous run of `trials` trials, `concurrency` at a
 * time, checking every proposal against `space`; stops early when the sampler runs out.
 */
function drive(
  sampler: Sampler,
  space: SearchSpace,
  seed: number,
  trials = 14,
  concurrency = 3,
): Op[] {
  const rng = new Rng(seed, 3);
  const ops: Op[] = [];
  let running: PendingTrial[] = [];
  let next = 0;
  let exhausted = false;
  for (;;) {
    while (!exhausted && running.length < concurrency && next < trials) {
      const params = sampler.suggest(next, running);
      ops.push({ kind: 'suggest', number: next, running, params });
      if (params === null) {
        exhausted = true;
        break;
      }
      expectValid(space, params, `trial ${next}`);
      running = [...running, { number: next, params }];
      next++;
    }
    if (running.length === 0) return ops;
    const done = running[rng.int(0, running.length - 1)] as PendingTrial;
    running = running.filter((t) => t !== done);
    const r = rng.next();
    const value = objective(done.params);
    const trial: FinishedTrial =
      r < 0.15
        ? { number: done.number, params: done.params, state: 'failed' }
        : r < 0.35
          ? {
              number: done.number,
              params: done.params,
              state: 'pruned',
              value: value + 1,
              step: rng.int(1, 5),
            }
          : { number: done.number, params: done.params, state: 'complete', value };
    sampler.tell(trial);
    ops.push({ kind: 'tell', trial });
  }
}

/** Fails with the offending parameter named when `params` is not a valid point of `space`. */
function expectValid(space: SearchSpace, params: Params, what: string): void {
  expect(() => space.validate(params, what)).not.toThrow();
  for (const def of space.params) {
    const v = params[def.name];
    if (v === undefined) continue;
    if (def.type === 'int') expect(Number.isInteger(v), `${what}: ${def.name}`).toBe(true);
    if (def.type === 'float') expect(typeof v, `${what}: ${def.name}`).toBe('number');
  }
}

/**
 * Replays into `fresh` the finished trials among `ops[0..cut)`, as the scheduler does on
 * resume, then runs `ops[cut..]` against it and returns what it proposes at each suggest.
 */
function resumeAt(fresh: Sampler, ops: readonly Op[], cut: number): (Params | null)[] {
  for (const op of ops.slice(0, cut)) if (op.kind === 'tell') fresh.tell(op.trial);
  const proposed: (Params | null)[] = [];
  for (const op of ops.slice(cut)) {
    if (op.kind === 'tell') fresh.tell(op.trial);
    else proposed.push(fresh.suggest(op.number, op.running));
  }
  return proposed;
}

const SEEDS = [0, 7];
const RANDOM_SPACES = 6;

/** Every named space and a few seeded random ones, parsed. */
function spaces(): [string, SearchSpace][] {
  const named = Object.entries(CONFORMANCE_SPACES).map(
    ([name, spec]) => [name, SearchSpace.parse(spec, name)] as [string, SearchSpace],
  );
  const random = Array.from({ length: RANDOM_SPACES }, (_, i) => {
    const name = `random space ${i}`;
    return [name, SearchSpace.parse(randomSpace(i), name)] as [string, SearchSpace];
  });
  return [...named, ...random];
}

/** Registers the sampler conformance tests for `target`. */
export function samplerConformanceSuite(target: SamplerTarget): void {
  /** The sampler for `space`, or the error it was refused with. */
  function build(space: SearchSpace, seed: number): Sampler | Error {
    try {
      return target.create(space, seed);
    } catch (err) {
      return err as Error;
    }
  }

  describe(`sampler "${target.name}" (conformance)`, () => {
    const cases = spaces();

    it('accepts a space of float and int parameters', () => {
      const space = SearchSpace.parse(CONFORMANCE_SPACES['uniform, log and stepped floats']);
      expect(build(space, 0)).not.toBeInstanceOf(Error);
    });

    it.each(cases)('proposes only valid params for %s, or refuses it clearly', (_, space) => {
      for (const seed of SEEDS) {
        const sampler = build(space, seed);
        if (sampler instanceof Error) {
          // Refused when built: a named input error, not invalid params later.
          expect(sampler).toBeInstanceOf(InputError);
          const names = space.params.map((p) => `"${p.name}"`);
          expect(
            names.some((n) => sampler.message.includes(n)) || /limit/.test(sampler.message),
            `refusal names a parameter or the limit: ${sampler.message}`,
          ).toBe(true);
          continue;
        }
        const ops = drive(sampler, space, seed);
        expect(ops.some((op) => op.kind === 'suggest' && op.params !== null)).toBe(true);
      }
    });

    it.each(cases)('proposes the same params for the same seed and history on %s', (_, space) => {
      for (const seed of SEEDS) {
        const a = build(space, seed);
        if (a instanceof Error) continue;
        const b = target.create(space, seed);
        expect(drive(b, space, seed)).toEqual(drive(a, space, seed));
      }
    });

    it.each(cases)(
      'rebuilds the same state from a replayed history on %s: a fresh instance proposes what the live one did',
      (_, space) => {
        for (const seed of SEEDS) {
          const live = build(space, seed);
          if (live instanceof Error) continue;
          const ops = drive(live, space, seed);
          const tells = ops.filter((op) => op.kind === 'tell').length;
          expect(tells).toBeGreaterThan(0);
          for (const cut of [0, Math.floor(ops.length / 3), Math.floor((2 * ops.length) / 3)]) {
            const expected = ops
              .slice(cut)
              .flatMap((op) => (op.kind === 'suggest' ? [op.params] : []));
            expect(resumeAt(target.create(space, seed), ops, cut), `resumed at op ${cut}`).toEqual(
              expected,
            );
          }
          // After the whole history: the next proposals, with and without trials running.
          const replayed = target.create(space, seed);
          resumeAt(replayed, ops, ops.length);
          const running = ops
            .flatMap((op) =>
              op.kind === 'suggest' && op.params !== null
                ? [{ number: op.number, params: op.params }]
                : [],
            )
            .slice(-2);
          const next = ops.filter((op) => op.kind === 'suggest').length;
          for (const [n, r] of [
            [next, running],
            [next + 1, []],
          ] as const) {
            const proposed = replayed.suggest(n, r);
            expect(proposed, `trial ${n} after replay`).toEqual(live.suggest(n, r));
            if (proposed !== null) expectValid(space, proposed, `trial ${n}`);
          }
        }
      },
    );
  });
}
