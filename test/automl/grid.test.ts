import { describe, expect, it } from 'vitest';
import {
  GridSampler,
  MAX_GRID_SIZE,
  type GridSamplerOptions,
} from '../../src/automl/samplers/grid.js';
import { SearchSpace, type ParamValue, type Params } from '../../src/automl/space.js';
import { InputError } from '../../src/protocol/errors.js';

/** Every point of the grid, in order. */
function all(sampler: GridSampler): Params[] {
  const out: Params[] = [];
  for (let n = 0; ; n++) {
    const p = sampler.suggest(n, []);
    if (p === null) return out;
    out.push(p);
  }
}

/** A canonical key for a point (key order does not matter). */
function key(p: Params): string {
  return JSON.stringify(Object.entries(p).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** The grid values of a one-parameter space. */
function valuesOf(def: Record<string, unknown>, options: GridSamplerOptions = {}): ParamValue[] {
  return all(new GridSampler(SearchSpace.parse({ x: def }), options)).map((p) => p.x!);
}

/**
 * Brute force: every assignment from the per-parameter value lists, each parameter also
 * possibly absent, kept when the space validates it. The grid must equal this set.
 */
function bruteForce(space: SearchSpace, lists: Record<string, readonly ParamValue[]>): Set<string> {
  let partial: Params[] = [{}];
  for (const def of space.params) {
    partial = partial.flatMap((p) => [
      p,
      ...lists[def.name]!.map((v) => ({ ...p, [def.name]: v })),
    ]);
  }
  const valid = partial.filter((p) => {
    try {
      space.validate(p);
      return true;
    } catch {
      return false;
    }
  });
  return new Set(valid.map(key));
}

const conditional = SearchSpace.parse({
  n: { type: 'int', low: 1, high: 2 },
  opt: { type: 'categorical', choices: ['sgd', 'adam'] },
  m: { type: 'float', low: 0, high: 1, when: { opt: 'sgd' } },
});

const nested = SearchSpace.parse({
  lr: { type: 'float', low: 1e-3, high: 1e-1, log: true },
  model: { type: 'categorical', choices: ['svm', 'tree', 'knn'] },
  kernel: { type: 'categorical', choices: ['rbf', 'linear', 'poly'], when: { model: 'svm' } },
  gamma: { type: 'float', low: 0.01, high: 1, log: true, when: { kernel: ['rbf', 'poly'] } },
  degree: { type: 'int', low: 2, high: 4, when: { kernel: 'poly' } },
  depth: { type: 'int', low: 1, high: 20, step: 5, when: { model: 'tree' } },
  k: { type: 'int', low: 1, high: 1000, log: true, when: { model: 'knn' } },
});

describe('GridSampler', () => {
  it('covers exactly the hand-computed points, first parameter slowest', () => {
    const sampler = new GridSampler(conditional, { points: 3 });
    expect(sampler.size).toBe(8);
    expect(all(sampler)).toEqual([
      { n: 1, opt: 'sgd', m: 0 },
      { n: 1, opt: 'sgd', m: 0.5 },
      { n: 1, opt: 'sgd', m: 1 },
      { n: 1, opt: 'adam' },
      { n: 2, opt: 'sgd', m: 0 },
      { n: 2, opt: 'sgd', m: 0.5 },
      { n: 2, opt: 'sgd', m: 1 },
      { n: 2, opt: 'adam' },
    ]);
  });

  it('holds every valid combination of nested conditions once, and nothing else', () => {
    const sampler = new GridSampler(nested, { points: 3 });
    const points = all(sampler);
    // lr: 3 values × (svm: rbf 3 gammas + linear 1 + poly 3 gammas × 3 degrees; tree: 4 depths; knn: 3 ks)
    expect(sampler.size).toBe(3 * (3 + 1 + 9 + 4 + 3));
    expect(points).toHaveLength(sampler.size);
    for (const p of points) nested.validate(p);
    const keys = new Set(points.map(key));
    expect(keys.size).toBe(points.length);
    const lists = {
      lr: [0.001, 0.01, 0.1],
      model: ['svm', 'tree', 'knn'],
      kernel: ['rbf', 'linear', 'poly'],
      gamma: [0.01, 0.1, 1],
      degree: [2, 3, 4],
      depth: [1, 6, 11, 16],
      k: [1, 32, 1000],
    };
    expect([...keys].sort()).toEqual([...bruteForce(nested, lists)].sort());
  });

  it('returns null once every point was proposed', () => {
    const sampler = new GridSampler(conditional, { points: 3 });
    expect(sampler.suggest(7, [])).toEqual({ n: 2, opt: 'adam' });
    expect(sampler.suggest(8, [])).toBeNull();
    expect(sampler.suggest(1000, [])).toBeNull();
    expect(() => sampler.suggest(-1, [])).toThrow(RangeError);
    expect(() => sampler.suggest(1.5, [])).toThrow(RangeError);
  });

  it('gives trial n the same point in any call order, so a resumed experiment goes on', () => {
    const points = all(new GridSampler(nested, { points: 3 }));
    const resumed = new GridSampler(nested, { points: 3 });
    resumed.tell({ number: 0, params: points[0]!, state: 'complete', value: 1 });
    for (let n = points.length - 1; n >= 0; n -= 7) {
      expect(resumed.suggest(n, [{ number: n - 1, params: {} }])).toEqual(points[n]);
    }
  });

  it('shuffles deterministically per seed, keeping the same set of points', () => {
    const ordered = all(new GridSampler(nested, { points: 3 }));
    const a = all(new GridSampler(nested, { points: 3, shuffle: true, seed: 4 }));
    const b = all(new GridSampler(nested, { points: 3, shuffle: true, seed: 4 }));
    const c = all(new GridSampler(nested, { points: 3, shuffle: true, seed: 5 }));
    expect(b).toEqual(a);
    expect(a).not.toEqual(ordered);
    expect(c).not.toEqual(a);
    expect(a.map(key).sort()).toEqual(ordered.map(key).sort());
    expect(c.map(key).sort()).toEqual(ordered.map(key).sort());
    // The seed only matters with shuffle.
    expect(all(new GridSampler(nested, { points: 3, seed: 4 }))).toEqual(ordered);
  });

  it('spaces continuous floats evenly in the internal coordinate, ends included', () => {
    expect(valuesOf({ type: 'float', low: 0, high: 1 })).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(valuesOf({ type: 'float', low: -1, high: 0.2 }, { points: 4 })).toEqual([
      -1, -0.6, -0.2, 0.2,
    ]);
    expect(valuesOf({ type: 'float', low: 1e-4, high: 1, log: true })).toEqual([
      1e-4, 1e-3, 1e-2, 0.1, 1,
    ]);
    expect(valuesOf({ type: 'float', low: 2, high: 2 })).toEqual([2]);
  });

  it('enumerates small ints and stepped floats, and spaces large ones on the step', () => {
    expect(valuesOf({ type: 'int', low: 0, high: 10, step: 3 })).toEqual([0, 3, 6, 9]);
    expect(valuesOf({ type: 'float', low: 0, high: 1, step: 0.3 })).toEqual([0, 0.3, 0.6, 0.9]);
    expect(valuesOf({ type: 'float', low: 0, high: 0.5, step: 0.1 })).toEqual([
      0, 0.1, 0.2, 0.3, 0.4, 0.5,
    ]);
    expect(valuesOf({ type: 'int', low: 1, high: 100 })).toEqual(
      Array.from({ length: 100 }, (_, i) => i + 1),
    );
    expect(valuesOf({ type: 'int', low: 0, high: 1000 })).toEqual([0, 250, 500, 750, 1000]);
    // 0, 3, ..., 999: the highest value on the step is 999, not 1001.
    expect(valuesOf({ type: 'int', low: 0, high: 1001, step: 3 })).toEqual([0, 249, 501, 750, 999]);
    expect(valuesOf({ type: 'int', low: 1, high: 10_000, log: true })).toEqual([
      1, 10, 100, 1000, 10_000,
    ]);
    expect(valuesOf({ type: 'float', low: 0, high: 200, step: 0.5 })).toEqual([
      0, 50, 100, 150, 200,
    ]);
    // More points than values: every value, once.
    expect(valuesOf({ type: 'int', low: 1, high: 150 }, { points: 200 })).toHaveLength(150);
    expect(valuesOf({ type: 'categorical', choices: ['b', 'a', true, 3] })).toEqual([
      'b',
      'a',
      true,
      3,
    ]);
  });

  it('uses explicit values in the order given, also to restrict a parent', () => {
    const sampler = new GridSampler(conditional, {
      values: { n: [2], opt: ['adam', 'sgd'], m: [0.9, 0.1] },
    });
    expect(all(sampler)).toEqual([
      { n: 2, opt: 'adam' },
      { n: 2, opt: 'sgd', m: 0.9 },
      { n: 2, opt: 'sgd', m: 0.1 },
    ]);
    const adamOnly = new GridSampler(conditional, { points: 3, values: { opt: ['adam'] } });
    expect(all(adamOnly)).toEqual([
      { n: 1, opt: 'adam' },
      { n: 2, opt: 'adam' },
    ]);
  });

  it.each([
    [
      'a float above high',
      { m: [0.5, 1.5] },
      'grid: parameter "m": value 1.5 is outside its domain',
    ],
    ['a fractional int', { n: [1, 1.5] }, 'grid: parameter "n": value 1.5 is outside its domain'],
    ['a string for an int', { n: ['2'] }, 'grid: parameter "n": value "2" is outside its domain'],
    [
      'a value that is not a choice',
      { opt: ['lbfgs'] },
      'grid: parameter "opt": value "lbfgs" is outside its domain',
    ],
    [
      'a repeated value',
      { opt: ['sgd', 'sgd'] },
      'grid: parameter "opt": value "sgd" appears twice',
    ],
    ['an empty list', { m: [] }, 'grid: parameter "m": values must not be empty'],
    [
      'an unknown parameter',
      { lr: [0.1] },
      'grid: values given for "lr", which is not a parameter',
    ],
  ])(
    'rejects explicit values with %s, naming the parameter and the value',
    (_what, values, message) => {
      expect(() => new GridSampler(conditional, { values })).toThrow(InputError);
      expect(() => new GridSampler(conditional, { values })).toThrow(message);
    },
  );

  it('rejects bad options, as they may come unchecked from an experiment file', () => {
    const bad =
      (options: Record<string, unknown>): (() => GridSampler) =>
      () =>
        new GridSampler(conditional, options as GridSamplerOptions);
    expect(bad({ points: 1 })).toThrow(
      'grid: points must be an integer of at least 2 (points is 1)',
    );
    expect(bad({ points: 2.5 })).toThrow(
      'grid: points must be an integer of at least 2 (points is 2.5)',
    );
    expect(bad({ shuffle: 'yes' })).toThrow(
      'grid: shuffle must be true or false (shuffle is "yes")',
    );
    expect(bad({ seed: 'x' })).toThrow('grid: seed must be a finite number (seed is "x")');
    expect(bad({ point: 3 })).toThrow('grid: unknown option "point"');
    expect(bad({ values: { n: 2 } })).toThrow('grid: parameter "n": values must be a list (got 2)');
    expect(bad({ values: [1] })).toThrow('grid: values must map parameter names to lists');
  });

  it('refuses a grid over 10,000,000 points, saying how big it is', () => {
    const spec = Object.fromEntries(
      Array.from({ length: 8 }, (_, i) => [`x${i}`, { type: 'float', low: 0, high: 1 }]),
    );
    const big = SearchSpace.parse(spec);
    expect(() => new GridSampler(big, { points: 10 })).toThrow(InputError);
    expect(() => new GridSampler(big, { points: 10 })).toThrow(
      'grid: the grid has 100000000 points; the limit is 10000000',
    );
    const one = SearchSpace.parse({ x: { type: 'float', low: 0, high: 1 } });
    expect(() => new GridSampler(one, { points: 20_000_000 })).toThrow(
      'grid: parameter "x" alone has 20000000 grid values; the limit is 10000000 points',
    );
  });

  it('indexes a grid at the limit without listing it', () => {
    const spec = Object.fromEntries(
      Array.from({ length: 7 }, (_, i) => [`x${i}`, { type: 'int', low: 0, high: 9 }]),
    );
    const sampler = new GridSampler(SearchSpace.parse(spec), { points: 10 });
    expect(sampler.size).toBe(MAX_GRID_SIZE);
    expect(sampler.suggest(1_234_567, [])).toEqual({
      x0: 1,
      x1: 2,
      x2: 3,
      x3: 4,
      x4: 5,
      x5: 6,
      x6: 7,
    });
    expect(sampler.suggest(MAX_GRID_SIZE - 1, [])).toEqual({
      x0: 9,
      x1: 9,
      x2: 9,
      x3: 9,
      x4: 9,
      x5: 9,
      x6: 9,
    });
    expect(sampler.suggest(MAX_GRID_SIZE, [])).toBeNull();
  });
});
