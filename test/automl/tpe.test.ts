import { describe, expect, it } from 'vitest';
import type { FinishedTrial, PendingTrial } from '../../src/automl/contract.js';
import { Rng } from '../../src/automl/rng.js';
import { RandomSampler } from '../../src/automl/samplers/random.js';
import { TpeSampler, type TpeSamplerOptions } from '../../src/automl/samplers/tpe.js';
import { SearchSpace, space, type Params } from '../../src/automl/space.js';
import { InputError } from '../../src/protocol/errors.js';

/** Log float, stepped float, stepped int, log int, categoricals of every value type, nested conditions, single values. */
const mixed = SearchSpace.parse({
  lr: { type: 'float', low: 1e-5, high: 0.1, log: true },
  dropout: { type: 'float', low: 0, high: 0.5, step: 0.05 },
  layers: { type: 'int', low: 1, high: 9, step: 2 },
  width: { type: 'int', low: 8, high: 1024, log: true },
  optimizer: { type: 'categorical', choices: ['sgd', 'adam', 'rmsprop'] },
  momentum: { type: 'float', low: 0, high: 0.99, when: { optimizer: 'sgd' } },
  nesterov: { type: 'categorical', choices: [true, false], when: { optimizer: 'sgd' } },
  dampening: { type: 'float', low: 0, high: 0.5, when: { nesterov: false } },
  beta1: { type: 'float', low: 0.8, high: 0.999, when: { optimizer: ['adam', 'rmsprop'] } },
  eps: { type: 'float', low: 1e-10, high: 1e-6, log: true, when: { optimizer: 'adam' } },
  batch: { type: 'categorical', choices: [32, 64, 128] },
  fixed: { type: 'float', low: 3, high: 3 },
  only: { type: 'categorical', choices: ['x'] },
});

/** A made-up objective over `mixed` that every parameter influences. */
function mixedObjective(p: Params): number {
  let v =
    (Math.log10(p.lr as number) + 3) ** 2 +
    ((p.dropout as number) - 0.2) ** 2 +
    Math.abs((p.layers as number) - 5) / 4;
  v += Math.abs(Math.log2(p.width as number) - 7) / 3 + (p.batch === 64 ? 0 : 0.3);
  if (p.optimizer === 'sgd')
    v += 1 - (p.momentum as number) + (p.nesterov === false ? (p.dampening as number) : 0);
  else v += (1 - (p.beta1 as number)) * 5 + (p.optimizer === 'adam' ? 0 : 0.2);
  return v;
}

const quadSpace = space().float('x', -5, 5).float('y', -5, 5).float('z', -5, 5).build();
const quad = (p: Params): number =>
  ((p.x as number) - 1.5) ** 2 + ((p.y as number) + 2) ** 2 + ((p.z as number) - 0.5) ** 2;

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1
    ? (s[mid] as number)
    : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Runs `trials` sequential trials of `objective` and returns the best value and the trials told. */
function optimize(
  sampler: {
    suggest(n: number, r: readonly PendingTrial[]): Params | null;
    tell(t: FinishedTrial): void;
  },
  objective: (p: Params) => number,
  trials: number,
): { best: number; told: FinishedTrial[] } {
  let best = Infinity;
  const told: FinishedTrial[] = [];
  for (let n = 0; n < trials; n++) {
    const params = sampler.suggest(n, []) as Params;
    const value = objective(params);
    best = Math.min(best, value);
    const trial: FinishedTrial = { number: n, params, state: 'complete', value };
    sampler.tell(trial);
    told.push(trial);
  }
  return { best, told };
}

describe('TpeSampler', () => {
  it('always suggests parameters that pass space.validate (mixed space, conditions, running and pruned trials)', () => {
    for (const multivariate of [true, false]) {
      for (let seed = 0; seed < 12; seed++) {
        const rng = new Rng(seed, 999);
        const sampler = new TpeSampler(mixed, { seed, multivariate, startupTrials: 4 });
        const running: PendingTrial[] = [];
        for (let n = 0; n < 40; n++) {
          const params = sampler.suggest(n, running);
          expect(() => mixed.validate(params)).not.toThrow();
          running.push({ number: n, params });
          // Finish the oldest running trials in a shuffled order, some pruned or failed.
          while (running.length > 3 || (running.length > 0 && rng.next() < 0.5)) {
            const [done] = running.splice(rng.int(0, running.length - 1), 1) as [PendingTrial];
            const r = rng.next();
            const value = mixedObjective(done.params);
            if (r < 0.1)
              sampler.tell({ number: done.number, params: done.params, state: 'failed' });
            else if (r < 0.25)
              sampler.tell({ ...done, state: 'pruned', value: value + 1, step: rng.int(1, 5) });
            else if (r < 0.3) sampler.tell({ ...done, state: 'pruned' });
            else sampler.tell({ ...done, state: 'complete', value });
          }
        }
      }
    }
  });

  it('never sets a conditional parameter whose condition does not hold, and sets every active one', () => {
    let sgd = 0;
    let adam = 0;
    const sampler = new TpeSampler(mixed, { seed: 3, startupTrials: 5 });
    for (let n = 0; n < 60; n++) {
      const p = sampler.suggest(n, []);
      expect('momentum' in p).toBe(p.optimizer === 'sgd');
      expect('beta1' in p).toBe(p.optimizer !== 'sgd');
      expect('eps' in p).toBe(p.optimizer === 'adam');
      expect('dampening' in p).toBe(p.optimizer === 'sgd' && p.nesterov === false);
      expect(p.fixed).toBe(3);
      expect(p.only).toBe('x');
      if (n >= 5 && p.optimizer === 'sgd') sgd++;
      if (n >= 5 && p.optimizer === 'adam') adam++;
      sampler.tell({ number: n, params: p, state: 'complete', value: mixedObjective(p) });
    }
    // Both branches were explored after the random start.
    expect(sgd + adam).toBeGreaterThan(0);
  });

  it('is deterministic for a seed and differs between seeds', () => {
    const run = (seed: number): Params[] => {
      const sampler = new TpeSampler(mixed, { seed, startupTrials: 5 });
      const out: Params[] = [];
      for (let n = 0; n < 25; n++) {
        const p = sampler.suggest(
          n,
          out.length > 0 ? [{ number: n - 1, params: out.at(-1) as Params }] : [],
        );
        out.push(p);
        sampler.tell({ number: n, params: p, state: 'complete', value: mixedObjective(p) });
      }
      return out;
    };
    expect(run(7)).toEqual(run(7));
    expect(run(7).slice(5)).not.toEqual(run(8).slice(5));
  });

  it('finds lower values than random search on a quadratic (median over 10 seeds)', () => {
    const tpe: number[] = [];
    const random: number[] = [];
    for (let seed = 0; seed < 10; seed++) {
      tpe.push(optimize(new TpeSampler(quadSpace, { seed }), quad, 60).best);
      random.push(optimize(new RandomSampler(quadSpace, { seed }), quad, 60).best);
    }
    expect(median(tpe)).toBeLessThan(median(random) / 20);
  });

  it('starts with exactly the random sampler’s suggestions', () => {
    const tpe = new TpeSampler(quadSpace, { seed: 11, startupTrials: 5 });
    const random = new RandomSampler(quadSpace, { seed: 11 });
    for (let n = 0; n < 5; n++) {
      const p = tpe.suggest(n, []);
      expect(p).toEqual(random.suggest(n, []));
      tpe.tell({ number: n, params: p, state: 'complete', value: quad(p) });
    }
    expect(tpe.suggest(5, [])).not.toEqual(random.suggest(5, []));
  });

  it('spreads parallel suggestions when running trials count as bad (constant liar)', () => {
    // Mean distance between 8 suggestions made while the previous ones are still running.
    const spread = (liar: boolean, seed: number): number => {
      const sampler = new TpeSampler(quadSpace, { seed, constantLiar: liar });
      optimize(sampler, quad, 40);
      const running: PendingTrial[] = [];
      for (let n = 40; n < 48; n++)
        running.push({ number: n, params: sampler.suggest(n, running) });
      let total = 0;
      let pairs = 0;
      for (let i = 0; i < running.length; i++) {
        for (let j = i + 1; j < running.length; j++) {
          const a = (running[i] as PendingTrial).params;
          const b = (running[j] as PendingTrial).params;
          total += Math.hypot(
            (a.x as number) - (b.x as number),
            (a.y as number) - (b.y as number),
            (a.z as number) - (b.z as number),
          );
          pairs++;
        }
      }
      return total / pairs;
    };
    const seeds = Array.from({ length: 8 }, (_, s) => s);
    const withLiar = median(seeds.map((s) => spread(true, s)));
    const without = median(seeds.map((s) => spread(false, s)));
    expect(withLiar).toBeGreaterThan(1.5 * without);
  });

  it('suggests the same next parameters after replaying the history into a fresh sampler', () => {
    const options: TpeSamplerOptions = { seed: 5, startupTrials: 6 };
    const first = new TpeSampler(mixed, options);
    const rng = new Rng(42);
    const told: FinishedTrial[] = [];
    for (let n = 0; n < 30; n++) {
      const params = first.suggest(n, []);
      const r = rng.next();
      const trial: FinishedTrial =
        r < 0.1
          ? { number: n, params, state: 'failed' }
          : r < 0.3
            ? {
                number: n,
                params,
                state: 'pruned',
                value: mixedObjective(params) + 1,
                step: rng.int(1, 4),
              }
            : { number: n, params, state: 'complete', value: mixedObjective(params) };
      first.tell(trial);
      told.push(trial);
    }
    const replayed = new TpeSampler(mixed, options);
    for (const trial of told) replayed.tell(trial);
    const running = [{ number: 30, params: (told[29] as FinishedTrial).params }];
    expect(replayed.suggest(31, running)).toEqual(first.suggest(31, running));
    expect(replayed.suggest(32, [])).toEqual(first.suggest(32, []));
  });

  it('ignores failed trials, also for the random start', () => {
    const plain = new TpeSampler(quadSpace, { seed: 2 });
    const withFailures = new TpeSampler(quadSpace, { seed: 2 });
    const { told } = optimize(plain, quad, 20);
    let n = 100;
    for (const trial of told) {
      withFailures.tell({ number: n, params: { x: 4.9, y: 4.9, z: 4.9 }, state: 'failed' });
      withFailures.tell(trial);
      n++;
    }
    expect(withFailures.suggest(50, [])).toEqual(plain.suggest(50, []));

    // Only failures so far: still the random start.
    const onlyFailed = new TpeSampler(quadSpace, { seed: 4, startupTrials: 3 });
    for (let i = 0; i < 10; i++)
      onlyFailed.tell({ number: i, params: { x: 0, y: 0, z: 0 }, state: 'failed' });
    expect(onlyFailed.suggest(10, [])).toEqual(
      new RandomSampler(quadSpace, { seed: 4 }).suggest(10, []),
    );
  });

  describe('ranks pruned trials after complete ones', () => {
    const line = space().float('x', 0, 10).build();
    const rng = new Rng(9);
    const near = (c: number): Params => ({
      x: Math.min(10, Math.max(0, c + rng.uniform(-0.5, 0.5))),
    });
    const suggestions = (sampler: TpeSampler): number[] =>
      Array.from({ length: 30 }, (_, i) => sampler.suggest(1000 + i, []).x as number);

    it('prefers complete trials over pruned ones with lower intermediate values', () => {
      const sampler = new TpeSampler(line, { seed: 1 });
      for (let i = 0; i < 20; i++) {
        sampler.tell({ number: 2 * i, params: near(2), state: 'complete', value: 5 + i / 100 });
        sampler.tell({ number: 2 * i + 1, params: near(8), state: 'pruned', value: 0, step: 3 });
      }
      expect(median(suggestions(sampler))).toBeLessThan(4);
    });

    it('among pruned trials, prefers those that got further, and counts them towards the random start', () => {
      const sampler = new TpeSampler(line, { seed: 1, startupTrials: 10 });
      for (let i = 0; i < 10; i++) {
        sampler.tell({ number: 2 * i, params: near(8), state: 'pruned', value: 0, step: 1 });
        sampler.tell({
          number: 2 * i + 1,
          params: near(2),
          state: 'pruned',
          value: 10 + i,
          step: 4,
        });
      }
      expect(median(suggestions(sampler))).toBeLessThan(4);
    });

    it('puts pruned trials without any value last', () => {
      const sampler = new TpeSampler(line, { seed: 1 });
      for (let i = 0; i < 20; i++) {
        sampler.tell({ number: 2 * i, params: near(8), state: 'pruned' });
        sampler.tell({
          number: 2 * i + 1,
          params: near(2),
          state: 'pruned',
          value: 100 + i,
          step: 1,
        });
      }
      expect(median(suggestions(sampler))).toBeLessThan(4);
    });
  });

  it('learns a conditional parameter only from the trials where it was active', () => {
    const cond = SearchSpace.parse({
      kind: { type: 'categorical', choices: ['a', 'b'] },
      u: { type: 'float', low: 0, high: 10, when: { kind: 'a' } },
      v: { type: 'float', low: 0, high: 10, when: { kind: 'b' } },
    });
    const sampler = new TpeSampler(cond, { seed: 6 });
    const rng = new Rng(6);
    // Good "a" trials have u near 7; "b" trials (v near 2) are worse but more numerous.
    for (let i = 0; i < 60; i++) {
      if (i % 3 === 0) {
        const u = rng.uniform(0, 10);
        sampler.tell({
          number: i,
          params: { kind: 'a', u },
          state: 'complete',
          value: Math.abs(u - 7),
        });
      } else {
        const v = rng.uniform(0, 10);
        sampler.tell({
          number: i,
          params: { kind: 'b', v },
          state: 'complete',
          value: 3 + Math.abs(v - 2),
        });
      }
    }
    const us: number[] = [];
    for (let n = 60; n < 100; n++) {
      const p = sampler.suggest(n, []);
      if (p.kind === 'a') us.push(p.u as number);
    }
    expect(us.length).toBeGreaterThan(20);
    expect(Math.abs(median(us) - 7)).toBeLessThan(1);
  });

  it('keeps discrete suggestions on their grid and log parameters inside their bounds', () => {
    const s = space()
      .float('q', 0, 1, { step: 0.1 })
      .int('k', 2, 11, { step: 3 })
      .int('w', 1, 1000, { log: true })
      .float('lr', 1e-6, 1e-2, { log: true })
      .build();
    const sampler = new TpeSampler(s, { seed: 8, startupTrials: 3 });
    const seen = new Set<number>();
    for (let n = 0; n < 50; n++) {
      const p = sampler.suggest(n, []);
      s.validate(p);
      expect([2, 5, 8, 11]).toContain(p.k);
      seen.add(p.q as number);
      const value =
        ((p.q as number) - 0.7) ** 2 +
        ((p.k as number) - 8) ** 2 +
        Math.abs(Math.log(p.w as number) - 3);
      sampler.tell({ number: n, params: p, state: 'complete', value });
    }
    for (const q of seen) expect(Math.round(q * 10) / 10).toBe(q);
  });

  it('rejects invalid options with an InputError naming the option and the value', () => {
    expect(() => new TpeSampler(quadSpace, { candidates: 0 })).toThrow(InputError);
    expect(() => new TpeSampler(quadSpace, { candidates: 0 })).toThrow(/candidates.*0/);
    expect(() => new TpeSampler(quadSpace, { gamma: 1.5 })).toThrow(/gamma.*1\.5/);
    expect(() => new TpeSampler(quadSpace, { startupTrials: -1 })).toThrow(/startupTrials.*-1/);
    expect(() => new TpeSampler(quadSpace, { priorWeight: 0 })).toThrow(/priorWeight.*0/);
    // Options read from a spec file arrive untyped.
    const fromSpec = { multivariate: 'no' } as unknown as TpeSamplerOptions;
    expect(() => new TpeSampler(quadSpace, fromSpec)).toThrow(/multivariate.*"no"/);
    const gammaText = { gamma: '0.2' } as unknown as TpeSamplerOptions;
    expect(() => new TpeSampler(quadSpace, gammaText)).toThrow(/gamma.*"0.2"/);
  });
});
