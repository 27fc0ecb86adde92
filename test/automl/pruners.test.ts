import { describe, expect, it } from 'vitest';
import type { FinishedTrial, PruneDecision, Pruner } from '../../src/automl/contract.js';
import { SuccessiveHalvingPruner } from '../../src/automl/pruners/asha.js';
import { HyperbandPruner } from '../../src/automl/pruners/hyperband.js';
import { MedianPruner } from '../../src/automl/pruners/median.js';
import { NopPruner } from '../../src/automl/pruners/none.js';
import { Rng } from '../../src/automl/rng.js';
import { InputError } from '../../src/protocol/errors.js';

/** Reports a whole curve (steps 1..n) and completes the trial. */
function complete(pruner: Pruner, number: number, curve: readonly number[]): void {
  curve.forEach((value, i) => pruner.report(number, i + 1, value));
  pruner.tell({ number, params: {}, state: 'complete', value: curve.at(-1) as number });
}

type Event =
  | {
      readonly kind: 'report';
      readonly number: number;
      readonly step: number;
      readonly value: number;
    }
  | { readonly kind: 'tell'; readonly trial: FinishedTrial };

/**
 * A seeded asynchronous history: `workers` trials in flight, each step a random one of them
 * advances by one step (sometimes several) and reports a noisy value of its own curve. A trial
 * ends when the pruner says so or at `maxStep`. Returns the events and decisions in order.
 */
function simulate(
  pruner: Pruner,
  seed: number,
  trials = 80,
  workers = 4,
  maxStep = 27,
): { events: Event[]; decisions: PruneDecision[] } {
  const rng = new Rng(seed, 11);
  const running = new Map<number, { step: number; quality: number }>();
  const events: Event[] = [];
  const decisions: PruneDecision[] = [];
  let next = 0;
  while (next < trials || running.size > 0) {
    while (running.size < workers && next < trials)
      running.set(next++, { step: 0, quality: rng.next() });
    const number = rng.pick([...running.keys()]);
    const t = running.get(number) as { step: number; quality: number };
    t.step = Math.min(maxStep, t.step + (rng.next() < 0.15 ? rng.int(2, 4) : 1));
    const value = t.quality + 1 / t.step + 0.05 * rng.normal();
    events.push({ kind: 'report', number, step: t.step, value });
    const decision = pruner.report(number, t.step, value);
    decisions.push(decision);
    if (decision === 'prune' || t.step >= maxStep) {
      const trial: FinishedTrial = {
        number,
        params: {},
        state: decision === 'prune' ? 'pruned' : 'complete',
        value,
        step: t.step,
      };
      events.push({ kind: 'tell', trial });
      pruner.tell(trial);
      running.delete(number);
    }
  }
  return { events, decisions };
}

function replay(pruner: Pruner, events: readonly Event[]): PruneDecision[] {
  const decisions: PruneDecision[] = [];
  for (const e of events) {
    if (e.kind === 'report') decisions.push(pruner.report(e.number, e.step, e.value));
    else pruner.tell(e.trial);
  }
  return decisions;
}

describe('MedianPruner', () => {
  /** Two completed trials: medians 1.5, 1.15 and 0.8 at steps 1, 2 and 3. */
  function withTwoCompleted(
    options: ConstructorParameters<typeof MedianPruner>[0] = {},
  ): MedianPruner {
    const pruner = new MedianPruner({ startupTrials: 2, ...options });
    complete(pruner, 0, [1, 0.8, 0.6]);
    complete(pruner, 1, [2, 1.5, 1.0]);
    return pruner;
  }

  it('prunes a trial clearly worse than the median and keeps a better one', () => {
    const pruner = withTwoCompleted();
    expect(pruner.report(2, 1, 10)).toBe('prune');
    expect(pruner.report(3, 1, 1.2)).toBe('continue');
    expect(pruner.report(3, 2, 1.1)).toBe('continue');
    expect(pruner.report(3, 3, 0.81)).toBe('prune');
  });

  it('judges a trial by its best value so far, as Optuna does', () => {
    const pruner = withTwoCompleted();
    expect(pruner.report(2, 1, 1.0)).toBe('continue');
    // 1.3 is above the step-2 median 1.15, but the trial's best (1.0) is not.
    expect(pruner.report(2, 2, 1.3)).toBe('continue');
  });

  it('prunes nothing before startupTrials trials have completed', () => {
    const pruner = new MedianPruner({ startupTrials: 3 });
    complete(pruner, 0, [1, 1]);
    complete(pruner, 1, [1, 1]);
    pruner.report(2, 1, 5);
    pruner.tell({ number: 2, params: {}, state: 'pruned', value: 5, step: 1 });
    pruner.tell({ number: 3, params: {}, state: 'failed' });
    expect(pruner.completedTrials).toBe(2);
    expect(pruner.report(4, 1, 100)).toBe('continue');
    complete(pruner, 5, [1, 1]);
    expect(pruner.report(4, 2, 100)).toBe('prune');
  });

  it('uses 5 startup trials by default', () => {
    const pruner = new MedianPruner();
    for (let n = 0; n < 4; n++) complete(pruner, n, [1]);
    expect(pruner.report(10, 1, 9)).toBe('continue');
    complete(pruner, 4, [1]);
    expect(pruner.report(11, 1, 9)).toBe('prune');
  });

  it('prunes nothing during the warmup steps', () => {
    const pruner = withTwoCompleted({ warmupSteps: 2 });
    expect(pruner.report(2, 1, 10)).toBe('continue');
    expect(pruner.report(2, 2, 10)).toBe('prune');
  });

  it('judges once per interval, at the first report at or after its start', () => {
    const pruner = new MedianPruner({ startupTrials: 1, intervalSteps: 2 });
    complete(pruner, 0, [1, 1, 0.2, 0.2, 0.2]);
    expect(pruner.report(1, 1, 5)).toBe('prune'); // interval [0, 2)
    expect(pruner.report(2, 1, 0.5)).toBe('continue'); // interval [0, 2)
    expect(pruner.report(2, 2, 0.6)).toBe('continue'); // interval [2, 4): best 0.5 ≤ 1
    expect(pruner.report(2, 3, 0.4)).toBe('continue'); // 0.4 > 0.2, but [2, 4) was judged at 2
    expect(pruner.report(2, 4, 0.3)).toBe('prune'); // interval [4, 6): 0.3 > 0.2
    expect(pruner.report(3, 3, 0.5)).toBe('prune'); // first report in [2, 4) is at 3
  });

  it('waits for minTrialsAtStep completed trials at the step', () => {
    const pruner = withTwoCompleted({ minTrialsAtStep: 3 });
    expect(pruner.report(2, 1, 10)).toBe('continue');
    complete(pruner, 3, [1, 1, 1]);
    expect(pruner.report(4, 1, 10)).toBe('prune');
  });

  it('keeps a trial at a step no completed trial reached', () => {
    const pruner = withTwoCompleted();
    expect(pruner.report(2, 7, 10)).toBe('continue');
  });

  it('leaves pruned trials out of the median', () => {
    const pruner = withTwoCompleted();
    for (let n = 2; n < 6; n++) {
      pruner.report(n, 1, 100);
      pruner.tell({ number: n, params: {}, state: 'pruned', value: 100, step: 1 });
    }
    expect(pruner.report(6, 1, 1.6)).toBe('prune');
  });

  it('prunes a trial whose values are all NaN', () => {
    const pruner = withTwoCompleted();
    expect(pruner.report(2, 1, NaN)).toBe('prune');
  });

  it('rejects bad options and steps', () => {
    expect(() => new MedianPruner({ startupTrials: -1 })).toThrow(
      'MedianPruner startupTrials must be a non-negative integer (got -1)',
    );
    expect(() => new MedianPruner({ intervalSteps: 0 })).toThrow(InputError);
    expect(() => new MedianPruner().report(0, NaN, 1)).toThrow('trial 0 reported step NaN');
  });
});

describe('SuccessiveHalvingPruner', () => {
  it('places rungs at minResource·η^(s+k), below maxResource', () => {
    const plain = new SuccessiveHalvingPruner({ maxResource: 81 });
    expect([0, 1, 2, 3].map((k) => plain.rungResource(k))).toEqual([1, 3, 9, 27]);
    expect(plain.rungCount).toBe(4);
    const shifted = new SuccessiveHalvingPruner({
      minResource: 2,
      reductionFactor: 3,
      minEarlyStoppingRate: 2,
      maxResource: 81,
    });
    expect([0, 1].map((k) => shifted.rungResource(k))).toEqual([18, 54]);
    expect(shifted.rungCount).toBe(2);
    expect(new SuccessiveHalvingPruner({ reductionFactor: 4 }).rungCount).toBe(Infinity);
  });

  it('makes exactly the hand-computed decisions (η = 3, rungs at 1, 3, 9)', () => {
    const p = new SuccessiveHalvingPruner({ reductionFactor: 3, maxResource: 27 });
    const steps: [number, number, number, PruneDecision][] = [
      // [trial, step, value, decision]                rung values afterwards
      [0, 1, 5, 'continue'], //                       r0 [5]             keep 1
      [1, 1, 3, 'continue'], //                       r0 [3 5]           keep 1
      [2, 1, 4, 'prune'], //                          r0 [3 4 5]         keep 1 (≤ 3)
      [3, 1, 1, 'continue'], //                       r0 [1 3 4 5]
      [4, 1, 2, 'prune'], //                          r0 [1 2 3 4 5]     keep 1
      [5, 1, 2.5, 'prune'], //                        r0 6 values        keep 2 (≤ 2)
      [6, 1, 1.5, 'continue'], //                     r0 7 values        keep 2 (≤ 1.5)
      [0, 2, 4.5, 'continue'], //                     below rung 1
      [0, 3, 4, 'continue'], //                       r1 [4]
      [1, 3, 2.9, 'continue'], //                     r1 [2.9 4]
      [3, 3, 3.5, 'prune'], //                        r1 [2.9 3.5 4]
      [6, 10, 0.5, 'continue'], //                    r1 [0.5 2.9 3.5 4], r2 [0.5]
      [1, 9, 2, 'prune'], //                          r2 [0.5 2]
      [0, 9, 0.5, 'continue'], //                     r2 [0.5 0.5 2]: a tie is promoted
      [0, 27, 0.4, 'continue'], //                    27 = maxResource: no rung
      [2, 3, 0.1, 'prune'], //                        pruned stays pruned, nothing recorded
      [7, 1, NaN, 'prune'], //                        NaN is pruned, not recorded
    ];
    for (const [number, step, value, decision] of steps) {
      expect(p.report(number, step, value), `trial ${number} step ${step}`).toBe(decision);
    }
    expect(p.rungValues(0)).toEqual([1, 1.5, 2, 2.5, 3, 4, 5]);
    expect(p.rungValues(1)).toEqual([0.5, 2.9, 3.5, 4]);
    expect(p.rungValues(2)).toEqual([0.5, 0.5, 2]);
  });

  it('keeps the top 1/η of each rung (seeded property)', () => {
    for (let seed = 0; seed < 20; seed++) {
      const rng = new Rng(seed, 5);
      const eta = rng.int(2, 4);
      const p = new SuccessiveHalvingPruner({ reductionFactor: eta });
      const seen: number[] = [];
      for (let n = 0; n < 60; n++) {
        const value = rng.next();
        seen.push(value);
        const rank = seen.filter((v) => v < value).length;
        const keep = Math.max(1, Math.floor(seen.length / eta));
        expect(p.report(n, 1, value)).toBe(rank < keep ? 'continue' : 'prune');
      }
    }
  });

  it('records a trial once per rung', () => {
    const p = new SuccessiveHalvingPruner({ maxResource: 81 });
    expect(p.report(0, 1, 1)).toBe('continue');
    expect(p.report(0, 2, 0.9)).toBe('continue');
    expect(p.rungValues(0)).toEqual([1]);
  });

  it('starts at rung minResource·η^s with a minimum early-stopping rate', () => {
    const p = new SuccessiveHalvingPruner({ minEarlyStoppingRate: 1 });
    p.report(0, 1, 1);
    expect(p.report(1, 2, 9)).toBe('continue');
    expect(p.report(0, 3, 1)).toBe('continue');
    expect(p.report(1, 3, 9)).toBe('prune');
  });

  it('rejects bad options', () => {
    expect(() => new SuccessiveHalvingPruner({ reductionFactor: 1 })).toThrow(
      'SuccessiveHalvingPruner reductionFactor must be an integer of at least 2 (got 1)',
    );
    expect(() => new SuccessiveHalvingPruner({ minResource: 0 })).toThrow(InputError);
  });
});

describe('HyperbandPruner', () => {
  it('has ⌊log_η(max/min)⌋ + 1 brackets weighted by Hyperband trial counts', () => {
    const p = new HyperbandPruner({ minResource: 1, maxResource: 81, reductionFactor: 3 });
    expect(p.bracketCount).toBe(5);
    expect(p.bracketBudgets).toEqual([81, 34, 15, 8, 5]);
    expect(new HyperbandPruner({ maxResource: 80 }).bracketCount).toBe(4);
    expect(new HyperbandPruner({ minResource: 2, maxResource: 2 }).bracketCount).toBe(1);
  });

  it('assigns brackets deterministically, in proportion to the budgets', () => {
    const a = new HyperbandPruner({ maxResource: 81 });
    const b = new HyperbandPruner({ maxResource: 81 });
    const counts = [0, 0, 0, 0, 0];
    for (let n = 0; n < 14_300; n++) {
      const bracket = a.bracketOf(n);
      expect(b.bracketOf(n)).toBe(bracket);
      counts[bracket] = (counts[bracket] as number) + 1;
    }
    [81, 34, 15, 8, 5].forEach((budget, i) => {
      expect(Math.abs((counts[i] as number) - budget * 100)).toBeLessThan(
        4 * Math.sqrt(budget * 100),
      );
    });
    const reseeded = new HyperbandPruner({ maxResource: 81, seed: 1 });
    const moved = Array.from({ length: 200 }, (_, n) => n).filter(
      (n) => reseeded.bracketOf(n) !== a.bracketOf(n),
    );
    expect(moved.length).toBeGreaterThan(50);
  });

  it('runs each bracket as successive halving with its own early-stopping rate', () => {
    for (let seed = 0; seed < 5; seed++) {
      const hyperband = new HyperbandPruner({ maxResource: 27 });
      const { events, decisions } = simulate(hyperband, seed, 150, 6, 27);
      const brackets = [0, 1, 2, 3].map(
        (s) => new SuccessiveHalvingPruner({ minEarlyStoppingRate: s, maxResource: 27 }),
      );
      const expected: PruneDecision[] = [];
      for (const e of events) {
        const number = e.kind === 'report' ? e.number : e.trial.number;
        const bracket = brackets[hyperband.bracketOf(number)] as SuccessiveHalvingPruner;
        if (e.kind === 'report') expected.push(bracket.report(e.number, e.step, e.value));
        else bracket.tell(e.trial);
      }
      expect(decisions).toEqual(expected);
      expect(decisions).toContain('prune');
      // The last bracket's first rung would be at 27 = maxResource: it never prunes.
      const lastBracket = events.filter(
        (e) => e.kind === 'tell' && hyperband.bracketOf(e.trial.number) === 3,
      );
      expect(lastBracket.length).toBeGreaterThan(0);
      for (const e of lastBracket) expect(e.kind === 'tell' && e.trial.state).toBe('complete');
    }
  });

  it('needs maxResource', () => {
    expect(() => new HyperbandPruner({})).toThrow('HyperbandPruner needs maxResource');
    expect(() => new HyperbandPruner({ minResource: 9, maxResource: 3 })).toThrow(InputError);
  });
});

describe('replaying reports and tells', () => {
  const makers: [string, () => Pruner][] = [
    ['MedianPruner', () => new MedianPruner({ startupTrials: 3, warmupSteps: 1 })],
    ['SuccessiveHalvingPruner', () => new SuccessiveHalvingPruner({ maxResource: 27 })],
    ['HyperbandPruner', () => new HyperbandPruner({ maxResource: 27 })],
  ];
  for (const [name, make] of makers) {
    it(`rebuilds the same ${name} in a fresh instance`, () => {
      for (let seed = 0; seed < 5; seed++) {
        const original = make();
        const { events, decisions } = simulate(original, seed);
        expect(decisions).toContain('prune');
        const rebuilt = make();
        expect(replay(rebuilt, events)).toEqual(decisions);
        // Both go on to decide the same way.
        const more = simulate(make(), seed + 50).events.map((e) =>
          e.kind === 'report'
            ? { ...e, number: e.number + 1000 }
            : { ...e, trial: { ...e.trial, number: e.trial.number + 1000 } },
        );
        expect(replay(rebuilt, more)).toEqual(replay(original, more));
      }
    });
  }
});

describe('NopPruner', () => {
  it('never prunes', () => {
    const p = new NopPruner();
    expect(p.report(0, 1, NaN)).toBe('continue');
    expect(p.report(1, 100, Infinity)).toBe('continue');
  });
});
