import { describe, expect, it } from 'vitest';
import type { FinishedTrial, PendingTrial, Sampler } from '../../src/automl/contract.js';
import { Rng } from '../../src/automl/rng.js';
import { CmaEsSampler } from '../../src/automl/samplers/cmaes.js';
import { RandomSampler } from '../../src/automl/samplers/random.js';
import { SearchSpace, space, type ParamDef, type Params } from '../../src/automl/space.js';
import { InputError } from '../../src/protocol/errors.js';

function sphereSpace(dims: number): SearchSpace {
  const defs: ParamDef[] = Array.from({ length: dims }, (_, i) => ({
    name: `x${i}`,
    type: 'float',
    low: -5,
    high: 5,
    log: false,
  }));
  return new SearchSpace(defs);
}

/** Sum of squares around (1, 1, ..., 1), off the center of [-5, 5]^n. */
function sphere(params: Params): number {
  return Object.values(params).reduce<number>((sum, v) => sum + ((v as number) - 1) ** 2, 0);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = (sorted.length - 1) / 2;
  return ((sorted[Math.floor(mid)] as number) + (sorted[Math.ceil(mid)] as number)) / 2;
}

/**
 * Runs `trials` trials with `workers` in flight; each step the trial to finish is drawn at
 * random, so results arrive out of order and across generations. Returns the best value and
 * every tell in order.
 */
function optimize(
  sampler: Sampler,
  objective: (p: Params) => number,
  trials: number,
  workers: number,
  orderSeed: number,
): { best: number; tells: FinishedTrial[] } {
  const order = new Rng(orderSeed, 1);
  const running: PendingTrial[] = [];
  const tells: FinishedTrial[] = [];
  let best = Infinity;
  let next = 0;
  while (next < trials || running.length > 0) {
    while (running.length < workers && next < trials) {
      const params = sampler.suggest(next, running) as Params;
      running.push({ number: next, params });
      next++;
    }
    const [done] = running.splice(order.int(0, running.length - 1), 1) as [PendingTrial];
    const value = objective(done.params);
    best = Math.min(best, value);
    const finished: FinishedTrial = { ...done, state: 'complete', value };
    tells.push(finished);
    sampler.tell(finished);
  }
  return { best, tells };
}

describe('CmaEsSampler', () => {
  it('always suggests params inside the space (seeded property)', () => {
    const mixed = space()
      .float('lr', 1e-5, 1, { log: true })
      .float('dropout', 0, 0.5, { step: 0.1 })
      .int('layers', 1, 3)
      .int('width', 16, 1024, { log: true })
      .int('batch', 32, 256, { step: 32 })
      .float('fixed', 2, 2)
      .build();
    for (let seed = 0; seed < 20; seed++) {
      const sampler = new CmaEsSampler(mixed, { seed, popsize: 6 });
      const noise = new Rng(seed, 7);
      for (let n = 0; n < 60; n++) {
        const params = sampler.suggest(n, []);
        expect(() => mixed.validate(params)).not.toThrow();
        // A value far from the center pushes the mean against the bounds.
        const value = -Math.log(params.lr as number) * (params.layers as number) + noise.normal();
        sampler.tell({ number: n, params, state: 'complete', value });
      }
      expect(sampler.generation).toBe(10);
    }
  });

  it('rejects a categorical parameter, naming it', () => {
    const mixed = space().float('x', 0, 1).categorical('opt', ['sgd', 'adam']).build();
    expect(() => new CmaEsSampler(mixed)).toThrow(InputError);
    expect(() => new CmaEsSampler(mixed)).toThrow(
      'CMA-ES needs float or int parameters without conditions; "opt" is categorical',
    );
  });

  it('rejects a conditional space at its categorical parent', () => {
    const conditional = space()
      .categorical('optimizer', ['sgd', 'adam'])
      .float('momentum', 0, 1, { when: { optimizer: 'sgd' } })
      .build();
    expect(() => new CmaEsSampler(conditional)).toThrow('"optimizer" is categorical');
  });

  it('rejects out-of-range options', () => {
    const s = sphereSpace(2);
    expect(() => new CmaEsSampler(s, { popsize: 1 })).toThrow(
      'popsize must be an integer of at least 2 (got 1)',
    );
    expect(() => new CmaEsSampler(s, { sigma0: 0 })).toThrow(
      'sigma0 must be a positive number (got 0)',
    );
    expect(() => new CmaEsSampler(s, { startupTrials: -1 })).toThrow(InputError);
  });

  it('uses popsize 4 + floor(3 ln n) by default', () => {
    expect(new CmaEsSampler(sphereSpace(1)).popsize).toBe(4);
    expect(new CmaEsSampler(sphereSpace(5)).popsize).toBe(8);
    expect(new CmaEsSampler(sphereSpace(20)).popsize).toBe(12);
  });

  it('converges on a 5-D sphere far better than random search (medians over 9 seeds)', () => {
    const s = sphereSpace(5);
    const cma: number[] = [];
    const random: number[] = [];
    for (let seed = 1; seed <= 9; seed++) {
      cma.push(optimize(new CmaEsSampler(s, { seed }), sphere, 200, 1, seed).best);
      random.push(optimize(new RandomSampler(s, { seed }), sphere, 200, 1, seed).best);
    }
    expect(median(cma)).toBeLessThan(0.1);
    expect(median(random)).toBeGreaterThan(1);
  });

  it('still converges with 4 trials in flight and results arriving out of order', () => {
    const s = sphereSpace(5);
    const bests: number[] = [];
    for (let seed = 1; seed <= 9; seed++) {
      const sampler = new CmaEsSampler(s, { seed });
      bests.push(optimize(sampler, sphere, 200, 4, seed).best);
      expect(sampler.generation).toBe(25);
    }
    expect(median(bests)).toBeLessThan(0.1);
  });

  it('finds the integer optimum of an int-valued problem', () => {
    const ints = space()
      .int('a', -20, 20)
      .int('b', -20, 20)
      .int('c', 1, 1000, { log: true })
      .build();
    const objective = (p: Params): number =>
      ((p.a as number) - 3) ** 2 + ((p.b as number) + 7) ** 2 + Math.log((p.c as number) / 50) ** 2;
    const bests: number[] = [];
    for (let seed = 1; seed <= 9; seed++) {
      bests.push(optimize(new CmaEsSampler(ints, { seed }), objective, 150, 1, seed).best);
    }
    expect(median(bests)).toBeLessThan(0.01);
  });

  it('updates once popsize results arrive, whatever their order within the generation', () => {
    const s = sphereSpace(3);
    const forward = new CmaEsSampler(s, { seed: 4 });
    const shuffled = new CmaEsSampler(s, { seed: 4 });
    const popsize = forward.popsize;
    const trials = Array.from({ length: popsize }, (_, n): FinishedTrial => {
      const params = forward.suggest(n, []);
      expect(shuffled.suggest(n, [])).toEqual(params);
      return { number: n, params, state: 'complete', value: sphere(params) };
    });
    const permuted = [...trials].reverse();
    [permuted[0], permuted[3]] = [permuted[3] as FinishedTrial, permuted[0] as FinishedTrial];
    trials.forEach((t, i) => {
      expect(forward.generation).toBe(0);
      forward.tell(t);
      shuffled.tell(permuted[i] as FinishedTrial);
    });
    expect(forward.generation).toBe(1);
    expect(shuffled.generation).toBe(1);
    for (let n = popsize; n < popsize + 10; n++) {
      expect(shuffled.suggest(n, [])).toEqual(forward.suggest(n, []));
    }
    // The update moved the distribution: the same trial number now draws a different point.
    const fresh = new CmaEsSampler(s, { seed: 4 });
    expect(forward.suggest(popsize, [])).not.toEqual(fresh.suggest(popsize, []));
  });

  it('uses results of an earlier generation that arrive late', () => {
    const s = sphereSpace(2);
    const sampler = new CmaEsSampler(s, { seed: 2, popsize: 4 });
    const early = Array.from({ length: 6 }, (_, n) => ({
      number: n,
      params: sampler.suggest(n, []),
    }));
    for (const t of early.slice(0, 4))
      sampler.tell({ ...t, state: 'complete', value: sphere(t.params) });
    expect(sampler.generation).toBe(1);
    // Trials 4 and 5 were drawn from generation 0 and count towards generation 1.
    for (const t of early.slice(4))
      sampler.tell({ ...t, state: 'complete', value: sphere(t.params) });
    for (let n = 6; n < 8; n++) {
      const params = sampler.suggest(n, []);
      sampler.tell({ number: n, params, state: 'complete', value: sphere(params) });
    }
    expect(sampler.generation).toBe(2);
  });

  it('ignores failed trials and counts pruned ones by their last value', () => {
    const s = sphereSpace(2);
    const sampler = new CmaEsSampler(s, { seed: 3, popsize: 4 });
    for (let n = 0; n < 4; n++) {
      sampler.tell({ number: n, params: sampler.suggest(n, []), state: 'failed' });
    }
    sampler.tell({ number: 4, params: sampler.suggest(4, []), state: 'pruned' });
    expect(sampler.generation).toBe(0);
    for (let n = 5; n < 9; n++) {
      const params = sampler.suggest(n, []);
      sampler.tell({ number: n, params, state: 'pruned', value: sphere(params), step: 3 });
    }
    expect(sampler.generation).toBe(1);
  });

  it('rebuilds the same state when a fresh sampler replays the tells', () => {
    const s = sphereSpace(4);
    for (let seed = 0; seed < 5; seed++) {
      const original = new CmaEsSampler(s, { seed });
      const { tells } = optimize(original, sphere, 90, 5, seed + 100);
      const replayed = new CmaEsSampler(s, { seed });
      for (const t of tells) replayed.tell(t);
      expect(replayed.generation).toBe(original.generation);
      for (let n = 90; n < 110; n++)
        expect(replayed.suggest(n, [])).toEqual(original.suggest(n, []));
    }
  });

  it('draws trials below startupTrials at random, then centers on the best of them', () => {
    const line = space().float('x', 0, 1).build();
    const sampler = new CmaEsSampler(line, { seed: 5, startupTrials: 10, sigma0: 0.05 });
    const startup = Array.from({ length: 10 }, (_, n) => sampler.suggest(n, []));
    expect(startup).toEqual(
      Array.from({ length: 10 }, (_, n) => new RandomSampler(line, { seed: 5 }).suggest(n, [])),
    );
    const objective = (p: Params): number => ((p.x as number) - 0.2) ** 2;
    startup.forEach((params, n) => {
      sampler.tell({ number: n, params, state: 'complete', value: objective(params) });
    });
    const best = startup.reduce((a, b) => (objective(a) <= objective(b) ? a : b));
    expect(Math.abs((best.x as number) - 0.5)).toBeGreaterThan(0.2);
    const later = Array.from({ length: 100 }, (_, i) => sampler.suggest(10 + i, []).x as number);
    expect(Math.abs(median(later) - (best.x as number))).toBeLessThan(0.025);
  });
});
