/**
 * Grid search: every combination of a finite set of values per parameter, proposed in a
 * fixed order, so trial `n` always gets grid point `n` and a resumed experiment continues
 * where it left off. Conditional parameters only branch where they are active, so the grid
 * holds each valid combination exactly once.
 *
 * Values per parameter:
 * - categorical: every choice, in declaration order;
 * - float without a step: `points` values evenly spaced in the internal coordinate (so
 *   log-spaced on a log scale), from `low` to `high` inclusive;
 * - int and stepped float: every value when there are at most `max(100, points)` of them,
 *   otherwise `points` values evenly spaced in the internal coordinate and rounded to the
 *   step, from `low` to the highest value on the step inclusive;
 * - any parameter named in `values`: exactly those values, in the order given.
 */
import { InputError } from '../../protocol/errors.js';
import type { FinishedTrial, PendingTrial, Sampler } from '../contract.js';
import { Rng } from '../rng.js';
import {
  SearchSpace,
  type NumericParam,
  type ParamDef,
  type ParamValue,
  type Params,
} from '../space.js';

/** The largest grid a `GridSampler` accepts. */
export const MAX_GRID_SIZE = 10_000_000;

/** Ints and stepped floats with at most this many values (or `points`, if larger) are enumerated. */
const ENUMERATE_UP_TO = 100;

export interface GridSamplerOptions {
  /** Seed of the shuffle; only used with `shuffle: true` (default: 0). */
  seed?: number;
  /**
   * Propose the grid in a seeded random order instead of lexicographic order, first
   * parameter slowest (default: false).
   */
  shuffle?: boolean;
  /** Grid values per float without a step, and per int or stepped float too large to enumerate (default: 5). */
  points?: number;
  /** Explicit grid values for some parameters, each inside the parameter's domain (default: none). */
  values?: Readonly<Record<string, readonly ParamValue[]>>;
}

/** Tidy decimal representation (0.30000000000000004 → 0.3), kept inside [low, high]. */
function tidy(def: NumericParam, v: number): number {
  return Math.min(Math.max(Number(v.toPrecision(12)), def.low), def.high);
}

/** How many values `def` has on its step, or `undefined` for a continuous float. */
function stepCount(def: NumericParam): number | undefined {
  if (def.type === 'int') return Math.floor((def.high - def.low) / def.step) + 1;
  if (def.step === undefined) return undefined;
  return Math.floor((def.high - def.low) / def.step + 1e-9) + 1;
}

/** How many grid values `def` gets from its domain (before removing duplicates). */
function gridLength(def: ParamDef, points: number): number {
  if (def.type === 'categorical') return def.choices.length;
  const count = stepCount(def);
  if (count !== undefined && count <= Math.max(ENUMERATE_UP_TO, points)) return count;
  return points;
}

/** The grid values of `def` from its domain (choices in order, numbers ascending), without duplicates. */
function gridValues(def: ParamDef, points: number): ParamValue[] {
  if (def.type === 'categorical') return [...def.choices];
  const count = stepCount(def);
  const out: number[] = [];
  if (count !== undefined && count <= Math.max(ENUMERATE_UP_TO, points)) {
    for (let k = 0; k < count; k++)
      out.push(SearchSpace.fromInternal(def, def.low + k * def.step!));
  } else {
    const lo = SearchSpace.toInternal(def, def.low);
    const hi = SearchSpace.toInternal(def, def.high);
    for (let i = 0; i < points; i++) {
      const x = i === points - 1 ? hi : lo + ((hi - lo) * i) / (points - 1);
      // fromInternal rounds ints and stepped floats to the step (and clamps to the highest value).
      const v = SearchSpace.fromInternal(def, x);
      out.push(count === undefined ? tidy(def, v) : v);
    }
    if (count === undefined) {
      out[0] = def.low;
      out[out.length - 1] = def.high;
    }
  }
  return [...new Set(out)];
}

const OPTION_NAMES: ReadonlySet<string> = new Set(['seed', 'shuffle', 'points', 'values']);

/** Options may come from an experiment file unchecked: check their runtime types. */
function checkOptions(options: GridSamplerOptions): void {
  for (const key of Object.keys(options)) {
    if (!OPTION_NAMES.has(key)) {
      throw new InputError(`grid: unknown option "${key}" (known: seed, shuffle, points, values)`);
    }
  }
  const { seed, shuffle, points, values } = options as Record<string, unknown>;
  if (seed !== undefined && !(typeof seed === 'number' && Number.isFinite(seed))) {
    throw new InputError(`grid: seed must be a finite number (seed is ${JSON.stringify(seed)})`);
  }
  if (shuffle !== undefined && typeof shuffle !== 'boolean') {
    throw new InputError(
      `grid: shuffle must be true or false (shuffle is ${JSON.stringify(shuffle)})`,
    );
  }
  if (points !== undefined && !(Number.isInteger(points) && (points as number) >= 2)) {
    throw new InputError(
      `grid: points must be an integer of at least 2 (points is ${JSON.stringify(points)})`,
    );
  }
  if (values !== undefined) {
    if (typeof values !== 'object' || values === null || Array.isArray(values)) {
      throw new InputError(
        `grid: values must map parameter names to lists (values is ${JSON.stringify(values)})`,
      );
    }
    for (const [name, list] of Object.entries(values)) {
      if (!Array.isArray(list)) {
        throw new InputError(
          `grid: parameter "${name}": values must be a list (got ${JSON.stringify(list)})`,
        );
      }
    }
  }
}

function explicitValues(
  space: SearchSpace,
  def: ParamDef,
  values: readonly ParamValue[],
): ParamValue[] {
  const { name } = def;
  if (values.length === 0)
    throw new InputError(`grid: parameter "${name}": values must not be empty`);
  const seen = new Set<string>();
  for (const v of values) {
    if (!space.contains(def, v)) {
      throw new InputError(
        `grid: parameter "${name}": value ${JSON.stringify(v)} is outside its domain`,
      );
    }
    const key = `${typeof v}:${String(v)}`;
    if (seen.has(key))
      throw new InputError(`grid: parameter "${name}": value ${JSON.stringify(v)} appears twice`);
    seen.add(key);
  }
  return [...values];
}

/**
 * Proposes every point of a grid over the space, one per trial number, then `null`. The
 * order is lexicographic (first parameter slowest) or, with `shuffle`, a seeded permutation.
 */
export class GridSampler implements Sampler {
  readonly #space: SearchSpace;
  readonly #seed: number;
  readonly #shuffle: boolean;
  /** Grid values per parameter, in the space's declaration order. */
  readonly #values: readonly (readonly ParamValue[])[];
  /** Whether a later parameter's condition names parameter i (its value changes the subtree). */
  readonly #isParent: readonly boolean[];
  /** Names of parents that matter from position i on, for memoizing subtree sizes. */
  readonly #relevant: readonly (readonly string[])[];
  readonly #counts = new Map<string, number>();
  readonly #size: number;
  #order: Uint32Array | undefined;

  /** Builds the grid; throws `InputError` for a bad option or a grid over 10,000,000 points. */
  constructor(space: SearchSpace, options: GridSamplerOptions = {}) {
    checkOptions(options);
    const points = options.points ?? 5;
    this.#space = space;
    this.#seed = options.seed ?? 0;
    this.#shuffle = options.shuffle ?? false;

    const explicit = options.values ?? {};
    for (const name of Object.keys(explicit)) {
      if (space.get(name) === undefined) {
        throw new InputError(`grid: values given for "${name}", which is not a parameter`);
      }
    }
    const values: ParamValue[][] = [];
    for (const def of space.params) {
      const given = explicit[def.name];
      if (given !== undefined) {
        values.push(explicitValues(space, def, given));
        continue;
      }
      const length = gridLength(def, points);
      if (length > MAX_GRID_SIZE) {
        throw new InputError(
          `grid: parameter "${def.name}" alone has ${length} grid values; the limit is ${MAX_GRID_SIZE} points (lower points or give values)`,
        );
      }
      values.push(gridValues(def, points));
    }
    this.#values = values;

    const params = space.params;
    const referencedFrom = params.map((_, i) =>
      params.slice(i).flatMap((def) => Object.keys(def.when ?? {})),
    );
    this.#isParent = params.map((def, i) => (referencedFrom[i + 1] ?? []).includes(def.name));
    this.#relevant = params.map((_, i) => {
      const later = new Set(referencedFrom[i]);
      return params.slice(0, i).flatMap((def) => (later.has(def.name) ? [def.name] : []));
    });

    this.#size = this.#count(0, {});
    if (this.#size > MAX_GRID_SIZE) {
      throw new InputError(
        `grid: the grid has ${this.#size} points; the limit is ${MAX_GRID_SIZE} (lower points or give values)`,
      );
    }
  }

  /** Number of grid points. */
  get size(): number {
    return this.#size;
  }

  /** Grid point `number` in the chosen order, or `null` once every point was proposed. */
  suggest(number: number, _running: readonly PendingTrial[]): Params | null {
    if (!Number.isInteger(number) || number < 0) {
      throw new RangeError(`grid: trial number must be a non-negative integer (got ${number})`);
    }
    if (number >= this.#size) return null;
    return this.#decode(this.#shuffle ? this.#permutation()[number]! : number);
  }

  tell(_trial: FinishedTrial): void {}

  /** Number of grid completions from position `i` on, given the values chosen before it. */
  #count(i: number, params: Params): number {
    const defs = this.#space.params;
    const def = defs[i];
    if (def === undefined) return 1;
    const key = `${i}\u0000${JSON.stringify(this.#relevant[i]!.map((name) => params[name] ?? null))}`;
    const known = this.#counts.get(key);
    if (known !== undefined) return known;
    let total: number;
    if (!this.#space.isActive(def, params)) {
      total = this.#count(i + 1, params);
    } else if (!this.#isParent[i]) {
      // Later parameters do not depend on this one: every value has the same subtree.
      total = this.#values[i]!.length * this.#count(i + 1, params);
    } else {
      total = 0;
      for (const v of this.#values[i]!) total += this.#count(i + 1, { ...params, [def.name]: v });
    }
    this.#counts.set(key, total);
    return total;
  }

  /** The grid point at lexicographic `index` (0 ≤ index < size). */
  #decode(index: number): Params {
    const params: Params = {};
    let rest = index;
    this.#space.params.forEach((def, i) => {
      if (!this.#space.isActive(def, params)) return;
      const values = this.#values[i]!;
      if (!this.#isParent[i]) {
        const sub = this.#count(i + 1, params);
        params[def.name] = values[Math.floor(rest / sub)]!;
        rest %= sub;
        return;
      }
      for (const v of values) {
        const sub = this.#count(i + 1, { ...params, [def.name]: v });
        if (rest < sub) {
          params[def.name] = v;
          return;
        }
        rest -= sub;
      }
    });
    return params;
  }

  /** The seeded order of grid points (Fisher–Yates), built on first use. */
  #permutation(): Uint32Array {
    if (this.#order === undefined) {
      const order = new Uint32Array(this.#size);
      for (let i = 0; i < order.length; i++) order[i] = i;
      const rng = new Rng(this.#seed);
      for (let i = order.length - 1; i > 0; i--) {
        const j = rng.int(0, i);
        const t = order[i]!;
        order[i] = order[j]!;
        order[j] = t;
      }
      this.#order = order;
    }
    return this.#order;
  }
}
