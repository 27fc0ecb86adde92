/**
 * The experiment page's plot data as pure functions over trial records: the timeline per worker,
 * slices and contours. Trials are built here; nothing is stored.
 */
import { describe, expect, it } from 'vitest';
import { contourOf, paramAxis, sliceOf, MAX_CATEGORIES } from '../../src/experiment/landscape.js';
import {
  timelineOf,
  TIMELINE_BARS,
  TIMELINE_COLUMNS,
  TIMELINE_ROWS,
  type TimelineBar,
  type TimelineSpan,
} from '../../src/experiment/timeline.js';
import type { TrialRecord } from '../../src/store/experiments.js';

function trial(n: number, over: Partial<TrialRecord> = {}): TrialRecord {
  return {
    experiment: 'e',
    number: n,
    params: { x: n },
    status: 'complete',
    taskId: `t${n}`,
    value: n,
    createdAt: 1_000 + n * 10,
    startedAt: 1_000 + n * 10,
    finishedAt: 1_000 + n * 10 + 5,
    attempt: 1,
    worker: { host: 'h', pid: 1 },
    ...over,
  };
}

/** A seeded generator (mulberry32), for trials with random params. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('timelineOf', () => {
  it('puts each trial on its worker’s row, with lanes for trials run at once, and the worker-less last', () => {
    const trials = [
      trial(0, { worker: { host: 'b', pid: 2 }, startedAt: 0, finishedAt: 100 }),
      trial(1, { worker: { host: 'b', pid: 2 }, startedAt: 50, finishedAt: 150 }),
      trial(2, { worker: { host: 'b', pid: 2 }, startedAt: 120, finishedAt: 200 }),
      trial(3, { worker: { host: 'a', pid: 9 }, startedAt: 10, finishedAt: 20, attempt: 3 }),
      // Dead-lettered: no worker, no start.
      trial(4, {
        worker: undefined,
        startedAt: undefined,
        createdAt: 30,
        finishedAt: 60,
        status: 'failed',
        value: undefined,
      }),
      // Running: ends now.
      trial(5, {
        worker: undefined,
        startedAt: 70,
        finishedAt: undefined,
        status: 'running',
        value: undefined,
      }),
      // Pending: never published, not on the timeline.
      trial(6, { status: 'pending', startedAt: undefined, finishedAt: undefined }),
    ];
    const t = timelineOf(trials, { now: 300 });
    expect(t.merged).toBe(false);
    expect(t.total).toBe(6);
    expect(t.from).toBe(0);
    expect(t.to).toBe(300);
    expect(t.rows.map((r) => r.worker)).toEqual(['a pid 9', 'b pid 2', null]);
    const b = t.rows[1]!;
    expect(b.lanes).toBe(2);
    expect((b.bars as TimelineBar[]).map((x) => [x.number, x.lane])).toEqual([
      [0, 0],
      [1, 1],
      [2, 0],
    ]);
    expect((t.rows[0]!.bars[0] as TimelineBar).attempt).toBe(3);
    const none = t.rows[2]!.bars as TimelineBar[];
    expect(none.map((x) => [x.number, x.status, x.start, x.end])).toEqual([
      [4, 'failed', 30, 60],
      [5, 'running', 70, 300],
    ]);
  });

  it('windows on the last N trials and keeps only trials that overlap the window', () => {
    const trials = Array.from({ length: 50 }, (_, n) => trial(n));
    const t = timelineOf(trials, { last: 10 });
    expect(t.from).toBe(trials[40]!.startedAt);
    expect(t.to).toBe(trials[49]!.finishedAt);
    expect(t.total).toBe(10);
    const w = timelineOf(trials, { from: 1_100, to: 1_200 });
    // Trial 9 ends at 1,095, before the window; trial 20 starts at 1,200, on its edge.
    expect(w.rows[0]!.bars.map((x) => (x as TimelineBar).number)).toEqual(
      Array.from({ length: 11 }, (_, i) => 10 + i),
    );
  });

  it('cuts a large window into spans per worker and column that count every trial, and caps the rows', () => {
    const random = rng(3);
    const trials: TrialRecord[] = [];
    const workers = TIMELINE_ROWS + 10;
    for (let n = 0; n < 10_000; n++) {
      const w = n % workers;
      const start = Math.floor(n / workers) * 100 + Math.floor(random() * 20);
      trials.push(
        trial(n, {
          worker: { host: `host-${String(w).padStart(2, '0')}`, pid: 1 },
          startedAt: start,
          finishedAt: start + 60,
          status: n % 7 === 0 ? 'failed' : n % 5 === 0 ? 'pruned' : 'complete',
          attempt: n % 11 === 0 ? 2 : 1,
        }),
      );
    }
    const t = timelineOf(trials);
    expect(t.total).toBeGreaterThan(TIMELINE_BARS);
    expect(t.merged).toBe(true);
    expect(t.rows).toHaveLength(TIMELINE_ROWS);
    expect(t.rows.at(-1)!.worker).toBe(`other workers (${workers - TIMELINE_ROWS + 1})`);
    const spans = t.rows.flatMap((r) => r.bars as TimelineSpan[]);
    expect(spans.reduce((s, x) => s + x.trials, 0)).toBe(10_000);
    expect(spans.reduce((s, x) => s + x.failed, 0)).toBe(
      trials.filter((x) => x.status === 'failed').length,
    );
    expect(spans.reduce((s, x) => s + x.retried, 0)).toBe(
      trials.filter((x) => x.attempt === 2).length,
    );
    for (const r of t.rows) {
      expect(r.bars.length).toBeLessThanOrEqual(TIMELINE_COLUMNS);
      // Busy all along, a worker still shows its trials column by column.
      expect(r.bars.length).toBeGreaterThan(TIMELINE_COLUMNS / 2);
    }
    expect(t.rows.reduce((s, r) => s + r.trials, 0)).toBe(10_000);
  });
});

describe('sliceOf', () => {
  it('plots the objective against a number param, at most max points, the best among them', () => {
    const random = rng(7);
    const trials = Array.from({ length: 2_000 }, (_, n) => {
      const x = random();
      return trial(n, { params: { x }, value: (x - 0.3) ** 2 + random() * 0.01 });
    });
    const best = trials.reduce((a, b) => (b.value! < a.value! ? b : a));
    const s = sliceOf(trials, 'x', { max: 100, direction: 'minimize' });
    expect(s.axis).toMatchObject({ param: 'x', kind: 'number', log: false });
    expect(s.total).toBe(2_000);
    expect(s.points).toHaveLength(100);
    expect(s.points.map((p) => p.number)).toContain(best.number);
    for (const p of s.points) {
      const t = trials[p.number]!;
      expect(p.x).toBe(t.params.x);
      expect(p.value).toBe(t.value);
    }
  });

  it('places categories by the space’s order, leaves out trials that lack the param or are not complete', () => {
    const trials = [
      trial(0, { params: { k: 'b' }, value: 2 }),
      trial(1, { params: { k: 'a' }, value: 1 }),
      trial(2, { params: {}, value: 5 }),
      trial(3, { params: { k: 'c' }, status: 'pruned', value: 9 }),
      trial(4, { params: { k: true }, value: 3 }),
    ];
    const s = sliceOf(trials, 'k', {
      hint: { type: 'categorical', choices: ['c', 'b', true, 'a'] },
    });
    expect(s.axis.categories).toEqual(['b', 'true', 'a']);
    expect(s.points.map((p) => [p.number, p.x, p.value])).toEqual([
      [0, 0, 2],
      [1, 2, 1],
      [4, 1, 3],
    ]);
  });

  it('says log when the space samples on a log scale, and keeps only the most frequent categories', () => {
    expect(
      paramAxis([trial(0, { params: { lr: 0.01 } })], 'lr', { type: 'float', log: true }).log,
    ).toBe(true);
    const many = Array.from({ length: MAX_CATEGORIES + 20 }, (_, n) =>
      trial(n, { params: { c: `c${n}` } }),
    );
    many.push(trial(999, { params: { c: 'c69' } }));
    const axis = paramAxis(many, 'c');
    expect(axis.categories).toHaveLength(MAX_CATEGORIES);
    expect(axis.categories).toContain('c69');
  });
});

describe('contourOf', () => {
  it('means the objective per cell of two params, numbers binned and categories one cell each', () => {
    const trials = [
      trial(0, { params: { x: 0, k: 'a' }, value: 1 }),
      trial(1, { params: { x: 0.1, k: 'a' }, value: 3 }),
      trial(2, { params: { x: 1, k: 'b' }, value: 10 }),
      trial(3, { params: { x: 0.95, k: 'a' }, value: 7 }),
      trial(4, { params: { x: 0.5 }, value: 100 }),
    ];
    const c = contourOf(trials, 'x', 'k', { bins: 2 });
    expect(c.total).toBe(4);
    expect(c.xEdges).toEqual([0, 0.5, 1]);
    expect(c.yEdges).toBeUndefined();
    expect(c.y.categories).toEqual(['a', 'b']);
    expect(c.z).toEqual([
      [2, 7],
      [null, 10],
    ]);
    expect(c.n).toEqual([
      [2, 1],
      [0, 1],
    ]);
    expect([c.zMin, c.zMax]).toEqual([2, 10]);
    expect(c.points).toHaveLength(4);
  });

  it('bins a log axis in log space and caps the points however many trials there are', () => {
    const random = rng(11);
    const trials = Array.from({ length: 5_000 }, (_, n) =>
      trial(n, { params: { lr: 10 ** (-5 + 4 * random()), m: random() }, value: random() }),
    );
    const c = contourOf(trials, 'lr', 'm', {
      hints: { lr: { type: 'float', log: true } },
      bins: 10,
      max: 300,
    });
    expect(c.x.log).toBe(true);
    expect(c.xEdges![0]).toBeCloseTo(Math.log10(c.x.min!), 10);
    expect(c.xEdges!.at(-1)).toBeCloseTo(Math.log10(c.x.max!), 10);
    expect(c.points).toHaveLength(300);
    expect(c.n.flat().reduce((s, v) => s + v, 0)).toBe(5_000);
    // Log-uniform samples fill log-space bins evenly: no bin of lr is empty.
    for (let xi = 0; xi < 10; xi++)
      expect(c.n.reduce((s, row) => s + row[xi]!, 0)).toBeGreaterThan(300);
  });
});
