import { describe, expect, expectTypeOf, it } from 'vitest';
import { Rng } from '../../src/automl/rng.js';
import { RandomSampler, sampleParam } from '../../src/automl/samplers/random.js';
import {
  MAX_CHOICES,
  MAX_PARAMS,
  SearchSpace,
  space,
  type NumericParam,
  type ParamDef,
  type Params,
  type ParamsOf,
} from '../../src/automl/space.js';
import { ErrorCode, InputError } from '../../src/protocol/errors.js';

/** The error `fn` throws (fails the test when it throws nothing). */
function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error, none was thrown');
}

/** Pearson's chi-square statistic of observed counts against expected probabilities. */
function chiSquare(counts: readonly number[], probs: readonly number[]): number {
  const n = counts.reduce((a, b) => a + b, 0);
  return counts.reduce((sum, c, i) => {
    const e = n * probs[i]!;
    return sum + (c - e) ** 2 / e;
  }, 0);
}

// Chi-square critical values at p = 0.001: the bound fails a fair sampler once in a thousand
// seeds, and a share that is off by a fifth for one bucket exceeds it many times over.
const CHI2_P001 = { 3: 16.27, 5: 20.52, 9: 27.88 } as const;

const mixed = SearchSpace.parse({
  lr: { type: 'float', low: 1e-5, high: 1, log: true },
  dropout: { type: 'float', low: 0, high: 0.55, step: 0.1 },
  layers: { type: 'int', low: 1, high: 10, step: 3 },
  width: { type: 'int', low: 8, high: 1024, log: true },
  optimizer: { type: 'categorical', choices: ['sgd', 'adam', 'rmsprop'] },
  momentum: { type: 'float', low: 0, high: 0.99, when: { optimizer: 'sgd' } },
  nesterov: { type: 'categorical', choices: [true, false], when: { optimizer: 'sgd' } },
  dampening: { type: 'float', low: -1, high: 1, when: { nesterov: false } },
  beta2: { type: 'float', low: 0.9, high: 0.9999, when: { optimizer: ['adam', 'rmsprop'] } },
  batch: { type: 'categorical', choices: [16, 32, 64] },
});

describe('SearchSpace.parse', () => {
  it('reads every kind of parameter and normalizes conditions to lists', () => {
    const s = SearchSpace.parse({
      a: { type: 'float', low: 0, high: 1 },
      b: { type: 'float', low: 1e-4, high: 1, log: true },
      c: { type: 'float', low: 0, high: 1, step: 0.25 },
      d: { type: 'int', low: 1, high: 9 },
      e: { type: 'int', low: 0, high: 100, step: 10 },
      f: { type: 'int', low: 1, high: 1024, log: true },
      g: { type: 'categorical', choices: ['x', 2, true] },
      h: { type: 'float', low: 0, high: 1, when: { g: 'x' } },
      i: { type: 'int', low: 0, high: 3, when: { g: [2, true] } },
    });
    expect(s.params).toEqual([
      { name: 'a', type: 'float', low: 0, high: 1, log: false },
      { name: 'b', type: 'float', low: 1e-4, high: 1, log: true },
      { name: 'c', type: 'float', low: 0, high: 1, log: false, step: 0.25 },
      { name: 'd', type: 'int', low: 1, high: 9, log: false, step: 1 },
      { name: 'e', type: 'int', low: 0, high: 100, log: false, step: 10 },
      { name: 'f', type: 'int', low: 1, high: 1024, log: true, step: 1 },
      { name: 'g', type: 'categorical', choices: ['x', 2, true] },
      { name: 'h', type: 'float', low: 0, high: 1, log: false, when: { g: ['x'] } },
      { name: 'i', type: 'int', low: 0, high: 3, log: false, step: 1, when: { g: [2, true] } },
    ]);
    expect(s.get('c')).toEqual(s.params[2]);
    expect(s.get('nope')).toBeUndefined();
    expect(s.isContinuous).toBe(false);
    expect(SearchSpace.parse({ x: { type: 'float', low: 0, high: 1 } }).isContinuous).toBe(true);
  });

  it.each([
    [
      'low above high',
      { x: { type: 'float', low: 2, high: 1 } },
      'space: parameter "x": low (2) is above high (1)',
    ],
    [
      'a float log scale with low 0',
      { x: { type: 'float', low: 0, high: 1, log: true } },
      'space: parameter "x": log scale needs low > 0 (low is 0)',
    ],
    [
      'an int log scale with a negative low',
      { n: { type: 'int', low: -1, high: 8, log: true } },
      'space: parameter "n": log scale needs low > 0 (low is -1)',
    ],
    [
      'a step with a log scale',
      { x: { type: 'float', low: 1, high: 2, log: true, step: 0.5 } },
      'space: parameter "x": step and log cannot be combined',
    ],
    [
      'a zero float step',
      { x: { type: 'float', low: 0, high: 1, step: 0 } },
      'space: parameter "x": step must be positive (step is 0)',
    ],
    [
      'an int log scale with a step',
      { n: { type: 'int', low: 1, high: 8, log: true, step: 2 } },
      'space: parameter "n": an int on a log scale must have step 1',
    ],
    [
      'an unknown condition parent',
      { x: { type: 'float', low: 0, high: 1, when: { opt: 'sgd' } } },
      'space: parameter "x": its condition names "opt", which is not a parameter',
    ],
    [
      'a parent declared after its child',
      {
        m: { type: 'float', low: 0, high: 1, when: { opt: 'sgd' } },
        opt: { type: 'categorical', choices: ['sgd', 'adam'] },
      },
      'space: parameter "m": its condition names "opt", which must be declared before it',
    ],
    [
      'a non-categorical parent',
      {
        lr: { type: 'float', low: 0, high: 1 },
        m: { type: 'float', low: 0, high: 1, when: { lr: 0.5 } },
      },
      'space: parameter "m": its condition parent "lr" must be categorical (it is float)',
    ],
    [
      'a condition value that is not a choice',
      {
        opt: { type: 'categorical', choices: ['sgd', 'adam'] },
        m: { type: 'float', low: 0, high: 1, when: { opt: ['sgd', 'lbfgs'] } },
      },
      'space: parameter "m": its condition value "lbfgs" is not a choice of "opt"',
    ],
    [
      'a duplicate choice',
      { opt: { type: 'categorical', choices: ['sgd', 'adam', 'sgd'] } },
      'space: parameter "opt": choice "sgd" appears twice',
    ],
    [
      'a bad name',
      { '1x': { type: 'float', low: 0, high: 1 } },
      'space: parameter "1x": a name must start with a letter or _',
    ],
    [
      'an unknown field',
      { x: { type: 'float', low: 0, high: 1, logg: true } },
      'space: parameter "x": definition: Unrecognized key: "logg"',
    ],
    [
      'a bound of the wrong type',
      { x: { type: 'float', low: '0', high: 1 } },
      'space: parameter "x": low: Invalid input: expected number, received string',
    ],
    [
      'a missing bound',
      { x: { type: 'float', high: 1 } },
      'space: parameter "x": low: Invalid input: expected number, received undefined',
    ],
    [
      'a fractional int bound',
      { n: { type: 'int', low: 0.5, high: 3 } },
      'space: parameter "n": low: Invalid input: expected int, received number',
    ],
    [
      'an unknown type',
      { x: { type: 'double', low: 0, high: 1 } },
      'space: parameter "x": type: Invalid discriminator value',
    ],
    [
      'an empty list of choices',
      { opt: { type: 'categorical', choices: [] } },
      'space: parameter "opt": choices: Too small',
    ],
    [
      'an empty condition list',
      {
        opt: { type: 'categorical', choices: ['sgd'] },
        m: { type: 'float', low: 0, high: 1, when: { opt: [] } },
      },
      'space: parameter "m": when.opt: Too small',
    ],
    [
      'a definition that is not an object',
      { x: 3 },
      'space: parameter "x": definition: Invalid input: expected object, received number',
    ],
  ])('rejects %s, naming the parameter and the problem', (_what, input, message) => {
    const err = thrown(() => SearchSpace.parse(input));
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).code).toBe(ErrorCode.BadInput);
    expect(err.message.startsWith(message)).toBe(true);
  });

  it('rejects an input that is not a map of parameters, and an empty one', () => {
    expect(() => SearchSpace.parse([])).toThrow(
      'space: Invalid input: expected record, received array',
    );
    expect(() => SearchSpace.parse(null)).toThrow(InputError);
    expect(() => SearchSpace.parse({})).toThrow(
      'space: a search space needs at least one parameter',
    );
  });

  it('refuses a categorical parameter with more than MAX_CHOICES choices, naming it and the count', () => {
    const choices = Array.from({ length: MAX_CHOICES + 1 }, (_, i) => `c${i}`);
    const message = new RegExp(
      `parameter "k": (choices: )?has ${MAX_CHOICES + 1} choices; the limit is ${MAX_CHOICES}`,
    );
    expect(() => SearchSpace.parse({ k: { type: 'categorical', choices } })).toThrow(message);
    expect(() => space().categorical('k', choices).build()).toThrow(message);
    expect(() =>
      SearchSpace.parse({ k: { type: 'categorical', choices: choices.slice(0, MAX_CHOICES) } }),
    ).not.toThrow();
  });

  it('refuses a space of more than MAX_PARAMS parameters', () => {
    const params = Object.fromEntries(
      Array.from({ length: MAX_PARAMS + 1 }, (_, i) => [
        `p${i}`,
        { type: 'float', low: 0, high: 1 },
      ]),
    );
    expect(() => SearchSpace.parse(params)).toThrow(
      `a search space has at most ${MAX_PARAMS} parameters (it has ${MAX_PARAMS + 1})`,
    );
  });

  it('prefixes messages with where the space came from', () => {
    expect(() =>
      SearchSpace.parse({ x: { type: 'float', low: 2, high: 1 } }, 'exp.yaml: space'),
    ).toThrow('exp.yaml: space: parameter "x": low (2) is above high (1)');
  });
});

describe('SearchSpace.validate', () => {
  const s = SearchSpace.parse({
    opt: { type: 'categorical', choices: ['sgd', 'adam'] },
    lr: { type: 'float', low: 1e-4, high: 1, log: true },
    layers: { type: 'int', low: 1, high: 9, step: 2 },
    drop: { type: 'float', low: 0, high: 0.5, step: 0.1 },
    m: { type: 'float', low: 0, high: 1, when: { opt: 'sgd' } },
  });
  const ok = { opt: 'sgd', lr: 0.01, layers: 3, drop: 0.3, m: 0.9 };

  it('accepts complete assignments under each branch of a condition', () => {
    expect(() => s.validate(ok)).not.toThrow();
    expect(() => s.validate({ opt: 'adam', lr: 1, layers: 9, drop: 0.5 })).not.toThrow();
    expect(() => s.validate({ ...ok, lr: 1e-4, layers: 1, drop: 0, m: 0 })).not.toThrow();
  });

  it.each([
    [
      'a missing parameter',
      { opt: 'adam', lr: 0.1, drop: 0 },
      'params: parameter "layers": is missing',
    ],
    [
      'a missing active child',
      { opt: 'sgd', lr: 0.1, layers: 1, drop: 0 },
      'params: parameter "m": is missing',
    ],
    [
      'an inactive parameter that is set',
      { opt: 'adam', lr: 0.1, layers: 1, drop: 0, m: 0.5 },
      'params: parameter "m": is set but its condition does not hold',
    ],
    [
      'an unknown parameter',
      { ...ok, momentum: 0.9 },
      'params: parameter "momentum": is not in the search space',
    ],
    [
      'a float below low',
      { ...ok, lr: 1e-5 },
      'params: parameter "lr": value 0.00001 is outside its domain',
    ],
    [
      'a float above high',
      { ...ok, m: 1.5 },
      'params: parameter "m": value 1.5 is outside its domain',
    ],
    [
      'a value off the int step',
      { ...ok, layers: 4 },
      'params: parameter "layers": value 4 is outside its domain',
    ],
    [
      'a fractional int',
      { ...ok, layers: 2.5 },
      'params: parameter "layers": value 2.5 is outside its domain',
    ],
    [
      'a value off the float step',
      { ...ok, drop: 0.25 },
      'params: parameter "drop": value 0.25 is outside its domain',
    ],
    [
      'a string for a number',
      { ...ok, lr: '0.1' },
      'params: parameter "lr": value "0.1" is outside its domain',
    ],
    [
      'a value that is not a choice',
      { ...ok, opt: 'lbfgs' },
      'params: parameter "opt": value "lbfgs" is outside its domain',
    ],
  ])('rejects %s', (_what, params, message) => {
    const err = thrown(() => s.validate(params as Params));
    expect(err).toBeInstanceOf(InputError);
    expect(err.message).toBe(message);
  });

  it('tells a choice from its string form', () => {
    const t = SearchSpace.parse({ batch: { type: 'categorical', choices: [16, 32] } });
    expect(t.contains(t.get('batch')!, 16)).toBe(true);
    expect(t.contains(t.get('batch')!, '16')).toBe(false);
  });
});

describe('SearchSpace.toJSON', () => {
  it('round-trips through parse, also as JSON text', () => {
    const again = SearchSpace.parse(mixed.toJSON());
    expect(again.params).toEqual(mixed.params);
    const viaText = SearchSpace.parse(JSON.parse(JSON.stringify(mixed)));
    expect(viaText.params).toEqual(mixed.params);
  });

  it('round-trips a space from the builder', () => {
    const built = space()
      .float('lr', 1e-4, 1, { log: true })
      .int('units', 16, 256, { step: 16 })
      .categorical('opt', ['sgd', 'adam'])
      .float('m', 0, 1, { when: { opt: 'sgd' } })
      .build();
    expect(SearchSpace.parse(built.toJSON()).params).toEqual(built.params);
  });
});

describe('internal coordinates', () => {
  const numeric = mixed.params.filter((p): p is NumericParam => p.type !== 'categorical');
  const extra: NumericParam[] = [
    { name: 'neg', type: 'float', low: -7.5, high: -0.25, log: false },
    { name: 'odd', type: 'float', low: -1.3, high: 2.9, log: false, step: 0.2 },
    { name: 'point', type: 'float', low: 3, high: 3, log: false },
    { name: 'offset', type: 'int', low: -20, high: 17, log: false, step: 4 },
    { name: 'tiny', type: 'float', low: 1e-9, high: 1e-6, log: true },
  ];
  const defs = [...numeric, ...extra];

  it('maps each domain value back to itself (seeded property)', () => {
    for (let seed = 0; seed < 200; seed++) {
      const rng = new Rng(seed);
      for (const def of defs) {
        // A domain value the way samplers produce one: anywhere in the internal interval.
        const [lo, hi] = SearchSpace.internalBounds(def);
        const values = [def.low, SearchSpace.fromInternal(def, rng.uniform(lo, hi))];
        if (def.step === undefined) {
          // A value as a person writes one: up to 12 significant digits.
          const written = Number(rng.uniform(def.low, def.high).toPrecision(rng.int(1, 12)));
          if (written >= def.low && written <= def.high) values.push(written);
          if (!def.log) values.push(rng.uniform(def.low, def.high));
        }
        if (def.type === 'int')
          values.push(def.low + rng.int(0, Math.floor((def.high - def.low) / def.step)) * def.step);
        for (const v of values) {
          expect(
            SearchSpace.fromInternal(def, SearchSpace.toInternal(def, v)),
            `${def.name} ${v}`,
          ).toBe(v);
        }
      }
    }
  });

  it('maps every internal coordinate, even beyond the bounds, to a value in the domain (seeded property)', () => {
    const s = new SearchSpace(defs.map((d) => ({ ...d, when: undefined }) as ParamDef));
    for (let seed = 0; seed < 200; seed++) {
      const rng = new Rng(seed);
      for (const def of s.params as NumericParam[]) {
        const [lo, hi] = SearchSpace.internalBounds(def);
        const width = Math.max(hi - lo, 1);
        for (const x of [lo, hi, rng.uniform(lo, hi), rng.uniform(lo - width, hi + width)]) {
          const v = SearchSpace.fromInternal(def, x);
          expect(s.contains(def, v), `${def.name} at ${x} gave ${v}`).toBe(true);
        }
      }
    }
  });

  it('uses a log coordinate for log scales and gives every step value an equal share', () => {
    const lf: NumericParam = { name: 'x', type: 'float', low: 1e-4, high: 1, log: true };
    expect(SearchSpace.toInternal(lf, 0.01)).toBeCloseTo(Math.log(0.01), 15);
    expect(SearchSpace.internalBounds(lf)).toEqual([Math.log(1e-4), Math.log(1)]);
    const li: NumericParam = { name: 'n', type: 'int', low: 1, high: 8, log: true, step: 1 };
    expect(SearchSpace.internalBounds(li)).toEqual([Math.log(0.5), Math.log(8.5)]);
    // 0, 3, 6, 9: each value owns an interval of width 3, the top one included.
    const si: NumericParam = { name: 'k', type: 'int', low: 0, high: 10, log: false, step: 3 };
    expect(SearchSpace.internalBounds(si)).toEqual([-1.5, 10.5]);
    expect(SearchSpace.fromInternal(si, 10.4)).toBe(9);
    const sf: NumericParam = { name: 'f', type: 'float', low: 0, high: 1, log: false, step: 0.3 };
    const [flo, fhi] = SearchSpace.internalBounds(sf);
    expect(flo).toBeCloseTo(-0.15, 12);
    expect(fhi).toBeCloseTo(1.05, 12);
  });

  it('rounds stepped floats to a tidy decimal', () => {
    const sf: NumericParam = { name: 'f', type: 'float', low: 0, high: 1, log: false, step: 0.1 };
    expect(SearchSpace.fromInternal(sf, 0.3)).toBe(0.3);
    expect(SearchSpace.fromInternal(sf, 0.71)).toBe(0.7);
    expect(SearchSpace.fromInternal(sf, 5)).toBe(1);
    expect(SearchSpace.fromInternal(sf, -5)).toBe(0);
  });
});

describe('typed builder', () => {
  it('types params from the calls, conditional ones optional', () => {
    const s = space()
      .float('lr', 1e-4, 1, { log: true })
      .categorical('opt', ['sgd', 'adam'])
      .float('m', 0, 1, { when: { opt: 'sgd' } })
      .build();
    expectTypeOf<ParamsOf<typeof s>>().toEqualTypeOf<{
      lr: number;
      opt: 'sgd' | 'adam';
      m?: number;
    }>();
    type P = ParamsOf<typeof s>;
    expectTypeOf<P['lr']>().toEqualTypeOf<number>();
    expectTypeOf<P['opt']>().toEqualTypeOf<'sgd' | 'adam'>();
    expectTypeOf<P['m']>().toEqualTypeOf<number | undefined>();
    expectTypeOf<{ lr: number; opt: 'adam' }>().toMatchTypeOf<P>();
    expectTypeOf<{ opt: 'sgd'; m: number }>().not.toMatchTypeOf<P>();
    expectTypeOf<{ lr: number; opt: 'lbfgs' }>().not.toMatchTypeOf<P>();
    // A condition on a parameter that is not declared (yet) does not compile.
    // @ts-expect-error "later" is not a parameter declared before "x"
    expect(() => space().float('x', 0, 1, { when: { later: 'a' } })).not.toThrow();

    expect(s.params).toEqual(
      SearchSpace.parse({
        lr: { type: 'float', low: 1e-4, high: 1, log: true },
        opt: { type: 'categorical', choices: ['sgd', 'adam'] },
        m: { type: 'float', low: 0, high: 1, when: { opt: 'sgd' } },
      }).params,
    );
  });

  it('rejects what parse rejects, and ints with fractional bounds or steps', () => {
    expect(() => space().float('x', 1, 0).build()).toThrow(
      'space: parameter "x": low (1) is above high (0)',
    );
    expect(() => space().categorical('c', []).build()).toThrow(
      'space: parameter "c": needs at least one choice',
    );
    expect(() => space().int('n', 0.5, 3).build()).toThrow(
      'space: parameter "n": an int needs integer bounds (low 0.5, high 3)',
    );
    expect(() => space().int('n', 0, 3, { step: 1.5 }).build()).toThrow(
      'space: parameter "n": step must be a positive integer (step is 1.5)',
    );
    expect(() => space().float('x', 0, 1).float('x', 0, 2).build()).toThrow(
      'space: parameter "x": declared twice',
    );
  });
});

describe('RandomSampler', () => {
  it('always suggests params that validate, reaching every branch (200 seeds)', () => {
    const seen = new Set<string>();
    for (let seed = 0; seed < 200; seed++) {
      const sampler = new RandomSampler(mixed, { seed });
      for (let n = 0; n < 10; n++) {
        const p = sampler.suggest(n, []);
        mixed.validate(p);
        seen.add(Object.keys(p).sort().join(','));
      }
    }
    // sgd with and without dampening, adam/rmsprop with beta2.
    expect(seen.size).toBe(3);
  });

  it('is deterministic per seed and trial number, whatever the call order', () => {
    const a = new RandomSampler(mixed, { seed: 7 });
    const forward = Array.from({ length: 30 }, (_, n) => a.suggest(n, []));
    const b = new RandomSampler(mixed, { seed: 7 });
    const backward = Array.from({ length: 30 }, (_, i) => b.suggest(29 - i, [])).reverse();
    expect(backward).toEqual(forward);
    b.tell({ number: 3, params: forward[3]!, state: 'complete', value: 1 });
    expect(b.suggest(12, [{ number: 11, params: forward[11]! }])).toEqual(forward[12]);
    expect(new Set(forward.map((p) => p.lr)).size).toBe(30);
    const c = new RandomSampler(mixed, { seed: 8 });
    expect(c.suggest(0, [])).not.toEqual(forward[0]);
    expect(new RandomSampler(mixed).suggest(5, [])).toEqual(
      new RandomSampler(mixed, { seed: 0 }).suggest(5, []),
    );
  });

  it('is roughly uniform over floats, ints, stepped values and choices', () => {
    const defs: ParamDef[] = [
      { name: 'u', type: 'float', low: -2, high: 3, log: false },
      { name: 'die', type: 'int', low: 1, high: 6, log: false, step: 1 },
      { name: 'k', type: 'int', low: 0, high: 10, log: false, step: 3 },
      { name: 'q', type: 'float', low: 0, high: 1, log: false, step: 0.3 },
      { name: 'c', type: 'categorical', choices: ['a', 'b', 'c', 'd', 'e', 'f'] },
    ];
    const n = 20_000;
    const rng = new Rng(12345);
    const buckets = defs.map(() => new Map<string, number>());
    for (let i = 0; i < n; i++) {
      defs.forEach((def, j) => {
        const v = sampleParam(def, rng);
        // u: 10 buckets of width 0.5 over [-2, 3).
        const key = String(def.name === 'u' ? Math.floor(((v as number) + 2) * 2) : v);
        buckets[j]!.set(key, (buckets[j]!.get(key) ?? 0) + 1);
      });
    }
    const expectKeys: string[][] = [
      Array.from({ length: 10 }, (_, i) => String(i)),
      ['1', '2', '3', '4', '5', '6'],
      ['0', '3', '6', '9'],
      ['0', '0.3', '0.6', '0.9'],
      ['a', 'b', 'c', 'd', 'e', 'f'],
    ];
    const dof = [9, 5, 3, 3, 5] as const;
    buckets.forEach((b, j) => {
      expect([...b.keys()].sort(), defs[j]!.name).toEqual([...expectKeys[j]!].sort());
      const counts = expectKeys[j]!.map((k) => b.get(k) ?? 0);
      const stat = chiSquare(
        counts,
        counts.map(() => 1 / counts.length),
      );
      expect(stat, `${defs[j]!.name}: ${counts.join(' ')}`).toBeLessThan(CHI2_P001[dof[j]!]);
    });
  });

  it('is log-uniform on log scales', () => {
    const n = 20_000;
    const rng = new Rng(99);
    const lf: ParamDef = { name: 'lr', type: 'float', low: 1e-5, high: 0.1, log: true };
    const decades = [0, 0, 0, 0];
    for (let i = 0; i < n; i++) {
      const v = sampleParam(lf, rng) as number;
      expect(v).toBeGreaterThanOrEqual(1e-5);
      expect(v).toBeLessThanOrEqual(0.1);
      decades[Math.min(3, Math.floor(Math.log10(v) + 5))]! += 1;
    }
    expect(chiSquare(decades, [0.25, 0.25, 0.25, 0.25]), decades.join(' ')).toBeLessThan(
      CHI2_P001[3],
    );

    // A log int: each value v owns [v - 0.5, v + 0.5) on the log scale.
    const li: ParamDef = { name: 'units', type: 'int', low: 1, high: 1000, log: true, step: 1 };
    const edges = [1, 2, 10, 100, 1001];
    const share = (a: number, b: number): number =>
      (Math.log(b - 0.5) - Math.log(a - 0.5)) / (Math.log(1000.5) - Math.log(0.5));
    const probs = edges.slice(1).map((b, i) => share(edges[i]!, b));
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < n; i++) {
      const v = sampleParam(li, rng) as number;
      counts[edges.findIndex((e) => v < e) - 1]! += 1;
    }
    expect(chiSquare(counts, probs), counts.join(' ')).toBeLessThan(CHI2_P001[3]);
  });
});
