/**
 * The objective's landscape over the params of an experiment's complete trials, sized for a
 * plot whatever the number of trials: a slice (objective against one param, at most `max`
 * points) and a contour (the mean objective over a grid of two params, plus at most `max` of
 * the trials as points). A param's axis is numeric (linear, or log when its space says so) or
 * categorical (one place per value: strings, booleans, and numbers the space lists as choices).
 * Pure and deterministic.
 */
import type { TrialRecord } from '../store/experiments.js';

/** What a plot of the landscape may learn of a param from the stored spec's `space` entry. */
export interface ParamHint {
  type?: string;
  log?: boolean;
  choices?: readonly unknown[];
}

/** How a param is laid out on a plot axis. */
export interface ParamAxis {
  param: string;
  /** `number`: values as they are; `category`: values by their index in `categories`. */
  kind: 'number' | 'category';
  /** A number axis on a log scale (the space samples it on one). */
  log: boolean;
  /** The categories, in the space's order (else sorted), as strings. */
  categories?: string[];
  /** Smallest and largest value seen (number axis; 0 and 0 when none). */
  min?: number;
  max?: number;
}

/** A complete trial of a landscape: its number, its place on the axis, its objective value. */
export interface SlicePoint {
  number: number;
  /** The param's value (number axis) or its category's index. */
  x: number;
  value: number;
}

export interface Slice {
  axis: ParamAxis;
  /** Complete trials that have the param (a conditional param may be absent). */
  total: number;
  /** At most `max` of them, evenly by trial number, the best trial always among them. */
  points: SlicePoint[];
}

export interface Contour {
  x: ParamAxis;
  y: ParamAxis;
  /** Cell edges of each number axis (bins + 1, in log space for a log axis); none for categories. */
  xEdges?: number[];
  yEdges?: number[];
  /** Mean objective per cell, `z[yi][xi]`; null where no trial fell. */
  z: (number | null)[][];
  /** Trials per cell, `n[yi][xi]`. */
  n: number[][];
  /** Smallest and largest cell mean (null when no cell has a trial). */
  zMin: number | null;
  zMax: number | null;
  /** Complete trials that have both params. */
  total: number;
  /** At most `max` of them: [x, y, value] with x and y as on their axes. */
  points: [number, number, number][];
}

/** Default number of points a slice or a contour sends. */
export const LANDSCAPE_POINTS = 500;
/** Default cells along a number axis of a contour. */
export const CONTOUR_BINS = 20;
/** Most categories an axis shows; the rarest beyond it are left out. */
export const MAX_CATEGORIES = 50;

type Complete = TrialRecord & { value: number };

function complete(trials: readonly TrialRecord[]): Complete[] {
  return trials.filter(
    (t): t is Complete =>
      t.status === 'complete' && t.value !== undefined && Number.isFinite(t.value),
  );
}

/** The axis of `param` over `trials` (those that have it), from the space's hint where there is one. */
export function paramAxis(
  trials: readonly TrialRecord[],
  param: string,
  hint?: ParamHint,
): ParamAxis {
  const values = trials.map((t) => t.params[param]).filter((v) => v !== undefined);
  const categorical =
    hint?.type === 'categorical' || !values.every((v) => typeof v === 'number' && isFinite(v));
  if (!categorical) {
    const nums = values as number[];
    const min = nums.length ? Math.min(...nums) : 0;
    const max = nums.length ? Math.max(...nums) : 0;
    return { param, kind: 'number', log: hint?.log === true && min > 0, min, max };
  }
  const seen = new Map<string, number>();
  for (const v of values) seen.set(String(v), (seen.get(String(v)) ?? 0) + 1);
  let order = Array.isArray(hint?.choices)
    ? hint.choices.map(String).filter((c) => seen.has(c))
    : [...seen.keys()].sort();
  for (const c of seen.keys()) if (!order.includes(c)) order.push(c);
  if (order.length > MAX_CATEGORIES) {
    const kept = new Set(
      [...order].sort((a, b) => seen.get(b)! - seen.get(a)!).slice(0, MAX_CATEGORIES),
    );
    order = order.filter((c) => kept.has(c));
  }
  return { param, kind: 'category', log: false, categories: order };
}

/** The place of a value on an axis; undefined when absent or in a category left out. */
function place(axis: ParamAxis, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (axis.kind === 'number') return typeof v === 'number' ? v : undefined;
  const i = axis.categories!.indexOf(String(v));
  return i < 0 ? undefined : i;
}

/** Every `step`-th of `rows` so that at most `max` remain, keeping the one at index `keep`. */
function sample<T>(rows: readonly T[], max: number, keep: number): T[] {
  if (rows.length <= max) return [...rows];
  const step = rows.length / max;
  const picked = new Set<number>();
  for (let i = 0; i < max; i++) picked.add(Math.floor(i * step));
  if (keep >= 0 && !picked.has(keep)) {
    picked.delete(Math.floor((max - 1) * step));
    picked.add(keep);
  }
  return [...picked].sort((a, b) => a - b).map((i) => rows[i]!);
}

function bestIndex(rows: readonly { value: number }[], dir: 'minimize' | 'maximize'): number {
  let best = -1;
  rows.forEach((r, i) => {
    if (
      best < 0 ||
      (dir === 'minimize' ? r.value < rows[best]!.value : r.value > rows[best]!.value)
    )
      best = i;
  });
  return best;
}

/** The objective against `param` over the complete trials, at most `max` points. */
export function sliceOf(
  trials: readonly TrialRecord[],
  param: string,
  options: { hint?: ParamHint; direction?: 'minimize' | 'maximize'; max?: number } = {},
): Slice {
  const done = complete(trials).filter((t) => t.params[param] !== undefined);
  const axis = paramAxis(done, param, options.hint);
  const rows: SlicePoint[] = [];
  for (const t of done) {
    const x = place(axis, t.params[param]);
    if (x !== undefined) rows.push({ number: t.number, x, value: t.value });
  }
  rows.sort((a, b) => a.number - b.number);
  const max = options.max ?? LANDSCAPE_POINTS;
  return {
    axis,
    total: done.length,
    points: sample(rows, max, bestIndex(rows, options.direction ?? 'minimize')),
  };
}

/** Bin edges of a number axis: `bins` equal cells over its range (in log space for a log axis). */
function edgesOf(axis: ParamAxis, bins: number): number[] {
  const f = (v: number) => (axis.log ? Math.log10(v) : v);
  const lo = f(axis.min!);
  const hi = f(axis.max!);
  const width = hi > lo ? (hi - lo) / bins : 1;
  return Array.from({ length: bins + 1 }, (_, i) => lo + i * width);
}

function cellOf(axis: ParamAxis, edges: number[] | undefined, x: number): number {
  if (!edges) return x;
  const v = axis.log ? Math.log10(x) : x;
  const bins = edges.length - 1;
  const i = Math.floor((v - edges[0]!) / (edges[1]! - edges[0]!));
  return Math.max(0, Math.min(bins - 1, i));
}

/**
 * The mean objective over a grid of `xParam` × `yParam` (`bins` cells along a number axis, one
 * per category) and at most `max` of the trials as points.
 */
export function contourOf(
  trials: readonly TrialRecord[],
  xParam: string,
  yParam: string,
  options: {
    hints?: Readonly<Record<string, ParamHint | undefined>>;
    direction?: 'minimize' | 'maximize';
    bins?: number;
    max?: number;
  } = {},
): Contour {
  const done = complete(trials).filter(
    (t) => t.params[xParam] !== undefined && t.params[yParam] !== undefined,
  );
  const x = paramAxis(done, xParam, options.hints?.[xParam]);
  const y = paramAxis(done, yParam, options.hints?.[yParam]);
  const bins = options.bins ?? CONTOUR_BINS;
  const xEdges = x.kind === 'number' ? edgesOf(x, bins) : undefined;
  const yEdges = y.kind === 'number' ? edgesOf(y, bins) : undefined;
  const nx = xEdges ? bins : x.categories!.length;
  const ny = yEdges ? bins : y.categories!.length;
  const sum = Array.from({ length: ny }, () => new Array<number>(nx).fill(0));
  const n = Array.from({ length: ny }, () => new Array<number>(nx).fill(0));
  const rows: { number: number; px: number; py: number; value: number }[] = [];
  for (const t of done) {
    const px = place(x, t.params[xParam]);
    const py = place(y, t.params[yParam]);
    if (px === undefined || py === undefined) continue;
    const xi = cellOf(x, xEdges, px);
    const yi = cellOf(y, yEdges, py);
    sum[yi]![xi]! += t.value;
    n[yi]![xi]!++;
    rows.push({ number: t.number, px, py, value: t.value });
  }
  let zMin: number | null = null;
  let zMax: number | null = null;
  const z = sum.map((row, yi) =>
    row.map((s, xi) => {
      const count = n[yi]![xi]!;
      if (count === 0) return null;
      const m = s / count;
      zMin = zMin === null ? m : Math.min(zMin, m);
      zMax = zMax === null ? m : Math.max(zMax, m);
      return m;
    }),
  );
  rows.sort((a, b) => a.number - b.number);
  const max = options.max ?? LANDSCAPE_POINTS;
  const points = sample(rows, max, bestIndex(rows, options.direction ?? 'minimize')).map(
    (r): [number, number, number] => [r.px, r.py, r.value],
  );
  return {
    x,
    y,
    ...(xEdges && { xEdges }),
    ...(yEdges && { yEdges }),
    z,
    n,
    zMin,
    zMax,
    total: done.length,
    points,
  };
}
