/**
 * One conformance suite for every pruner: it runs unchanged against each implementation of the
 * `Pruner` contract (src/automl/contract.ts) and checks what the scheduler relies on when it
 * resumes an experiment: a pruner rebuilt by replaying the stored history (every report and
 * every finished trial, in the order they happened) decides as the one that lived through it,
 * for every trial and step, during the replay and after it.
 *
 * The histories are seeded asynchronous runs: several trials in flight, each report from a
 * random one of them, steps that sometimes jump, trials that complete, fail (their worker died)
 * or are pruned (and then told as pruned with their last value). As in the scheduler, a trial
 * reports each step at most once and only while it runs.
 */
import { describe, expect, it } from 'vitest';
import { PruneDecision, type FinishedTrial, type Pruner } from '../../../src/automl/contract.js';
import { Rng } from '../../../src/automl/rng.js';

/** One pruner under test. */
export interface PrunerTarget {
  readonly name: string;
  /** A fresh pruner; every call builds it with the same options. */
  create(): Pruner;
  /** Largest step a trial runs to (the experiment's `budget.maxSteps`). */
  readonly maxSteps: number;
}

/** One entry of an experiment's history, as the store keeps it. */
type Entry =
  | {
      readonly kind: 'report';
      readonly number: number;
      readonly step: number;
      readonly value: number;
    }
  | { readonly kind: 'tell'; readonly trial: FinishedTrial };

/**
 * Drives `pruner` through a seeded run of `trials` trials, `concurrency` at a time; returns the
 * history and the decision of each report, in order.
 */
function drive(
  pruner: Pruner,
  seed: number,
  maxSteps: number,
  trials = 40,
  concurrency = 4,
): { history: Entry[]; decisions: PruneDecision[] } {
  const rng = new Rng(seed, 5);
  const history: Entry[] = [];
  const decisions: PruneDecision[] = [];
  const running = new Map<number, { step: number; quality: number; last?: number }>();
  let next = 0;
  while (next < trials || running.size > 0) {
    while (running.size < concurrency && next < trials) {
      running.set(next++, { step: 0, quality: rng.next() });
    }
    const number = rng.pick([...running.keys()]);
    const t = running.get(number)!;
    const finish = (trial: FinishedTrial): void => {
      pruner.tell(trial);
      history.push({ kind: 'tell', trial });
      running.delete(number);
    };
    // Now and then a worker dies: the trial fails without a last report.
    if (rng.next() < 0.04) {
      finish({ number, params: {}, state: 'failed' });
      continue;
    }
    t.step = Math.min(maxSteps, t.step + (rng.next() < 0.2 ? rng.int(2, 3) : 1));
    const value = t.quality + 1 / t.step + 0.05 * rng.normal();
    t.last = value;
    const decision = pruner.report(number, t.step, value);
    expect(Object.values(PruneDecision)).toContain(decision);
    history.push({ kind: 'report', number, step: t.step, value });
    decisions.push(decision);
    if (decision === PruneDecision.Prune) {
      finish({ number, params: {}, state: 'pruned', value, step: t.step });
    } else if (t.step >= maxSteps || rng.next() < 0.03) {
      finish({ number, params: {}, state: 'complete', value });
    }
  }
  return { history, decisions };
}

/** Feeds `entries` to `pruner` as the scheduler replays a history; returns each report's decision. */
function replay(pruner: Pruner, entries: readonly Entry[]): PruneDecision[] {
  const decisions: PruneDecision[] = [];
  for (const e of entries) {
    if (e.kind === 'report') decisions.push(pruner.report(e.number, e.step, e.value));
    else pruner.tell(e.trial);
  }
  return decisions;
}

const SEEDS = [0, 1, 2, 3];

/** Registers the pruner conformance tests for `target`. */
export function prunerConformanceSuite(target: PrunerTarget): void {
  describe(`pruner "${target.name}" (conformance)`, () => {
    it('decides the same for the same history in two instances', () => {
      for (const seed of SEEDS) {
        const a = drive(target.create(), seed, target.maxSteps);
        const b = drive(target.create(), seed, target.maxSteps);
        expect(b).toEqual(a);
      }
    });

    it('decides the same for every trial and step after a replay of its history as live', () => {
      for (const seed of SEEDS) {
        const { history, decisions } = drive(target.create(), seed, target.maxSteps);
        expect(decisions.length).toBeGreaterThan(0);
        for (const cut of [0.25, 0.5, 0.75, 1].map((f) => Math.floor(f * history.length))) {
          // Rebuilt from the history up to `cut` (its decisions then are the stored ones),
          // then fed the rest of the run live.
          const before = history.slice(0, cut).filter((e) => e.kind === 'report').length;
          const rebuilt = target.create();
          expect(replay(rebuilt, history.slice(0, cut)), `replay up to entry ${cut}`).toEqual(
            decisions.slice(0, before),
          );
          expect(replay(rebuilt, history.slice(cut)), `after a replay up to entry ${cut}`).toEqual(
            decisions.slice(before),
          );
        }
      }
    });

    it('goes on deciding as the live pruner after a replay, for new trials', () => {
      for (const seed of SEEDS) {
        const live = target.create();
        const { history } = drive(live, seed, target.maxSteps);
        const rebuilt = target.create();
        replay(rebuilt, history);
        // A second run of new trials (numbered on from the first) fed to both.
        const more = drive(target.create(), seed + 100, target.maxSteps).history.map((e): Entry =>
          e.kind === 'report'
            ? { ...e, number: e.number + 1000 }
            : { ...e, trial: { ...e.trial, number: e.trial.number + 1000 } },
        );
        expect(replay(rebuilt, more)).toEqual(replay(live, more));
      }
    });
  });
}
