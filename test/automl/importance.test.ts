import { describe, expect, it } from 'vitest';
import { paramImportance } from '../../src/automl/importance.js';
import { Rng } from '../../src/automl/rng.js';

describe('paramImportance', () => {
  it('ranks first the parameter that drives the objective, then a weaker one, then noise', () => {
    const rng = new Rng(11);
    const trials = Array.from({ length: 500 }, () => {
      const x = rng.uniform(0, 1);
      const y = rng.uniform(0, 1);
      const z = rng.uniform(0, 1);
      const k = rng.next() < 0.5 ? 'a' : 'b';
      return {
        params: { x, y, z, k },
        value: 10 * x * x + 2 * y + (k === 'a' ? 0 : 0.01) + rng.uniform(-0.05, 0.05),
      };
    });
    const ranked = paramImportance(trials);
    expect(ranked.map((r) => r.param).slice(0, 2)).toEqual(['x', 'y']);
    expect(ranked[0]!.importance).toBeGreaterThan(0.8);
    expect(ranked.reduce((s, r) => s + r.importance, 0)).toBeCloseTo(1, 9);
  });

  it('finds a categorical parameter that decides the objective', () => {
    const rng = new Rng(3);
    const trials = Array.from({ length: 200 }, () => {
      const opt = ['sgd', 'adam', 'rmsprop'][Math.floor(rng.next() * 3)]!;
      const lr = rng.uniform(0, 1);
      return { params: { opt, lr }, value: (opt === 'adam' ? 1 : 0) + 0.01 * lr };
    });
    expect(paramImportance(trials)[0]!.param).toBe('opt');
  });

  it('gives every parameter 0 when the objective does not vary or there are too few trials', () => {
    expect(paramImportance([{ params: { x: 1 }, value: 2 }])).toEqual([
      { param: 'x', importance: 0 },
    ]);
    const flat = [1, 2, 3, 4].map((x) => ({ params: { x }, value: 5 }));
    expect(paramImportance(flat)).toEqual([{ param: 'x', importance: 0 }]);
  });
});
