/**
 * Search spaces: float (uniform or log), int (step or log), categorical, and conditional
 * parameters that exist only under some choice of a categorical parent. One space has a
 * plain-data form (from YAML or JSON, checked here) and a typed builder; both produce a
 * `SearchSpace`, whose parameters are ordered so that a parent precedes its children.
 */
import { z } from 'zod';
import { InputError } from '../protocol/errors.js';

/** A parameter value as a trial receives it. */
export type ParamValue = number | string | boolean;
/** One trial's parameters by name; inactive conditional parameters are absent. */
export type Params = Record<string, ParamValue>;

/** A parameter is active only when each named categorical parent holds one of the listed values. */
export type Condition = Readonly<Record<string, readonly ParamValue[]>>;

interface ParamBase {
  readonly name: string;
  /** Present when the parameter is conditional. */
  readonly when?: Condition;
}

export interface FloatParam extends ParamBase {
  readonly type: 'float';
  readonly low: number;
  readonly high: number;
  /** Sample on a log scale (requires low > 0). */
  readonly log: boolean;
  /** Discretization step, if any (not with log). */
  readonly step?: number;
}

export interface IntParam extends ParamBase {
  readonly type: 'int';
  readonly low: number;
  readonly high: number;
  readonly log: boolean;
  /** Step between values, starting at low (default: 1; must be 1 with log). */
  readonly step: number;
}

export interface CategoricalParam extends ParamBase {
  readonly type: 'categorical';
  readonly choices: readonly ParamValue[];
}

export type ParamDef = FloatParam | IntParam | CategoricalParam;
export type NumericParam = FloatParam | IntParam;

/** Most choices a categorical parameter may have. */
export const MAX_CHOICES = 10_000;
/** Most parameters a space may have. */
export const MAX_PARAMS = 1_000;

const paramValue = z.union([z.number(), z.string(), z.boolean()]);
const whenSchema = z.record(z.string(), z.union([paramValue, z.array(paramValue).min(1)]));
const floatSchema = z.strictObject({
  type: z.literal('float'),
  low: z.number(),
  high: z.number(),
  log: z.boolean().optional(),
  step: z.number().optional(),
  when: whenSchema.optional(),
});
const intSchema = z.strictObject({
  type: z.literal('int'),
  low: z.number().int(),
  high: z.number().int(),
  log: z.boolean().optional(),
  step: z.number().int().optional(),
  when: whenSchema.optional(),
});
const categoricalSchema = z.strictObject({
  type: z.literal('categorical'),
  choices: z
    .array(paramValue)
    .min(1)
    .max(MAX_CHOICES, {
      error: (issue) =>
        `has ${Array.isArray(issue.input) ? issue.input.length : 'too many'} choices; the limit is ${MAX_CHOICES} (for more, use an int parameter as an index)`,
    }),
  when: whenSchema.optional(),
});
const paramSchema = z.discriminatedUnion('type', [floatSchema, intSchema, categoricalSchema]);

/**
 * The plain-data form of a space, as written in an experiment spec:
 * `{ lr: { type: float, low: 1e-5, high: 0.1, log: true }, momentum: { type: float, low: 0,
 * high: 0.99, when: { optimizer: sgd } } }`.
 */
export const spaceSchema = z
  .record(z.string(), paramSchema)
  .refine((space) => Object.keys(space).length <= MAX_PARAMS, {
    error: (issue) =>
      `a search space has at most ${MAX_PARAMS} parameters (it has ${Object.keys(issue.input as object).length})`,
  });
export type SpaceSpec = z.input<typeof spaceSchema>;

function fail(where: string, name: string, problem: string): never {
  throw new InputError(`${where}: parameter "${name}": ${problem}`);
}

function checkParam(def: ParamDef, where: string): void {
  const { name } = def;
  if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(name)) {
    fail(where, name, 'a name must start with a letter or _ and hold only letters, digits, _ . -');
  }
  if (def.type === 'categorical') {
    if (def.choices.length === 0) fail(where, name, 'needs at least one choice');
    if (def.choices.length > MAX_CHOICES) {
      fail(
        where,
        name,
        `has ${def.choices.length} choices; the limit is ${MAX_CHOICES} (for more, use an int parameter as an index)`,
      );
    }
    const seen = new Set<string>();
    for (const c of def.choices) {
      const key = `${typeof c}:${String(c)}`;
      if (seen.has(key)) fail(where, name, `choice ${JSON.stringify(c)} appears twice`);
      seen.add(key);
    }
    return;
  }
  if (!Number.isFinite(def.low) || !Number.isFinite(def.high)) {
    fail(where, name, `bounds must be finite numbers (low ${def.low}, high ${def.high})`);
  }
  if (def.low > def.high) fail(where, name, `low (${def.low}) is above high (${def.high})`);
  if (def.log && def.low <= 0) fail(where, name, `log scale needs low > 0 (low is ${def.low})`);
  if (def.type === 'float' && def.step !== undefined) {
    if (!(def.step > 0)) fail(where, name, `step must be positive (step is ${def.step})`);
    if (def.log) fail(where, name, 'step and log cannot be combined');
  }
  if (def.type === 'int') {
    if (!Number.isInteger(def.low) || !Number.isInteger(def.high)) {
      fail(where, name, `an int needs integer bounds (low ${def.low}, high ${def.high})`);
    }
    if (!(Number.isInteger(def.step) && def.step >= 1)) {
      fail(where, name, `step must be a positive integer (step is ${def.step})`);
    }
    if (def.log && def.step !== 1) fail(where, name, 'an int on a log scale must have step 1');
  }
}

/** An immutable, validated search space. */
export class SearchSpace {
  /** Parameters in declaration order; every parent precedes its children. */
  readonly params: readonly ParamDef[];
  readonly #byName: ReadonlyMap<string, ParamDef>;

  /** Validates `params` (names, bounds, conditions); throws `InputError` naming the parameter. */
  constructor(params: readonly ParamDef[], where = 'space') {
    if (params.length === 0)
      throw new InputError(`${where}: a search space needs at least one parameter`);
    if (params.length > MAX_PARAMS) {
      throw new InputError(
        `${where}: a search space has at most ${MAX_PARAMS} parameters (it has ${params.length})`,
      );
    }
    const byName = new Map<string, ParamDef>();
    for (const def of params) {
      if (byName.has(def.name)) fail(where, def.name, 'declared twice');
      checkParam(def, where);
      for (const [parent, values] of Object.entries(def.when ?? {})) {
        const p = byName.get(parent);
        if (p === undefined) {
          const later = params.some((q) => q.name === parent);
          fail(
            where,
            def.name,
            later
              ? `its condition names "${parent}", which must be declared before it`
              : `its condition names "${parent}", which is not a parameter`,
          );
        }
        if (p.type !== 'categorical') {
          fail(
            where,
            def.name,
            `its condition parent "${parent}" must be categorical (it is ${p.type})`,
          );
        }
        for (const v of values) {
          if (!p.choices.includes(v)) {
            fail(
              where,
              def.name,
              `its condition value ${JSON.stringify(v)} is not a choice of "${parent}"`,
            );
          }
        }
      }
      byName.set(def.name, def);
    }
    this.params = params;
    this.#byName = byName;
  }

  /** Parses the plain-data form (from YAML or JSON); `where` prefixes error messages. */
  static parse(input: unknown, where = 'space'): SearchSpace {
    const parsed = spaceSchema.safeParse(input);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const path = issue?.path ?? [];
      const name = path[0];
      const detail = `${path.slice(1).join('.') || 'definition'}: ${issue?.message ?? 'invalid'}`;
      if (name === undefined)
        throw new InputError(`${where}: ${issue?.message ?? 'invalid search space'}`);
      fail(where, String(name), detail);
    }
    const defs: ParamDef[] = Object.entries(parsed.data).map(([name, p]) => {
      const when =
        p.when === undefined
          ? undefined
          : Object.fromEntries(
              Object.entries(p.when).map(([k, v]) => [k, Array.isArray(v) ? v : [v]]),
            );
      const base = when === undefined ? { name } : { name, when };
      switch (p.type) {
        case 'float':
          return {
            ...base,
            type: 'float',
            low: p.low,
            high: p.high,
            log: p.log ?? false,
            ...(p.step !== undefined ? { step: p.step } : {}),
          };
        case 'int':
          return {
            ...base,
            type: 'int',
            low: p.low,
            high: p.high,
            log: p.log ?? false,
            step: p.step ?? 1,
          };
        case 'categorical':
          return { ...base, type: 'categorical', choices: p.choices };
      }
    });
    return new SearchSpace(defs, where);
  }

  /** The plain-data form, which `parse` reads back into an equal space. */
  toJSON(): SpaceSpec {
    const out: SpaceSpec = {};
    for (const def of this.params) {
      const { name, ...rest } = def;
      out[name] = rest as SpaceSpec[string];
    }
    return out;
  }

  get(name: string): ParamDef | undefined {
    return this.#byName.get(name);
  }

  /** True when every parameter is float or int and none is conditional (what CMA-ES needs). */
  get isContinuous(): boolean {
    return this.params.every((p) => p.type !== 'categorical' && p.when === undefined);
  }

  /** Whether `def` is active given the parameters chosen so far (its parents must be in `params`). */
  isActive(def: ParamDef, params: Readonly<Params>): boolean {
    if (def.when === undefined) return true;
    for (const [parent, values] of Object.entries(def.when)) {
      const v = params[parent];
      if (v === undefined || !values.includes(v)) return false;
    }
    return true;
  }

  /**
   * Checks a full assignment: every active parameter present and inside its domain, no
   * inactive or unknown one. Throws `InputError` naming the first offending parameter.
   */
  validate(params: Readonly<Params>, where = 'params'): void {
    for (const name of Object.keys(params)) {
      if (!this.#byName.has(name)) fail(where, name, 'is not in the search space');
    }
    for (const def of this.params) {
      const v = params[def.name];
      const active = this.isActive(def, params);
      if (!active) {
        if (v !== undefined) fail(where, def.name, 'is set but its condition does not hold');
        continue;
      }
      if (v === undefined) fail(where, def.name, 'is missing');
      if (!this.contains(def, v))
        fail(where, def.name, `value ${JSON.stringify(v)} is outside its domain`);
    }
  }

  /** Whether `value` lies in the domain of `def` (bounds, step, integrality, choices). */
  contains(def: ParamDef, value: ParamValue): boolean {
    if (def.type === 'categorical') return def.choices.includes(value);
    if (typeof value !== 'number' || !Number.isFinite(value)) return false;
    if (value < def.low || value > def.high) return false;
    if (def.type === 'int' && !Number.isInteger(value)) return false;
    const step = def.type === 'int' ? def.step : def.step;
    if (step !== undefined) {
      const k = (value - def.low) / step;
      if (Math.abs(k - Math.round(k)) > 1e-9 * Math.max(1, Math.abs(k))) return false;
    }
    return true;
  }

  /**
   * The internal (continuous) coordinate of a numeric value: log for log scales, identity
   * otherwise. Samplers model numeric parameters in this coordinate.
   */
  static toInternal(def: NumericParam, value: number): number {
    return def.log ? Math.log(value) : value;
  }

  /**
   * Internal bounds of a numeric parameter; an int or stepped float spans from half a step
   * below its lowest value to half a step above its highest (the last multiple of the step
   * from low, which may be below high), so every value gets an equal share of the interval.
   */
  static internalBounds(def: NumericParam): readonly [number, number] {
    if (def.log) {
      if (def.type === 'int') return [Math.log(def.low - 0.5), Math.log(def.high + 0.5)];
      return [Math.log(def.low), Math.log(def.high)];
    }
    if (def.step === undefined) return [def.low, def.high];
    const top = def.low + Math.floor((def.high - def.low) / def.step + 1e-9) * def.step;
    return [def.low - def.step / 2, top + def.step / 2];
  }

  /** The value for an internal coordinate: clamped into the domain and rounded to the step. */
  static fromInternal(def: NumericParam, x: number): number {
    let v = def.log ? Math.exp(x) : x;
    if (def.type === 'int') {
      v = def.low + Math.round((v - def.low) / def.step) * def.step;
      const top = def.low + Math.floor((def.high - def.low) / def.step) * def.step;
      return Math.min(Math.max(v, def.low), top);
    }
    if (def.step !== undefined) {
      const k = Math.round((v - def.low) / def.step);
      const kMax = Math.floor((def.high - def.low) / def.step + 1e-9);
      v = def.low + Math.min(Math.max(k, 0), kMax) * def.step;
      // Keep the decimal representation tidy (0.1 + 2 * 0.1 → 0.3, not 0.30000000000000004).
      v = Number(v.toPrecision(12));
    } else if (def.log) {
      // exp(log(v)) can miss v by a few ulps; 12 significant digits make the round trip exact.
      v = Number(v.toPrecision(12));
    }
    return Math.min(Math.max(v, def.low), def.high);
  }
}

type Choice = string | number | boolean;
type WhenOption<T> = { when?: { [K in keyof T]?: T[K] | readonly T[K][] } };
/** Makes a condition naming a parameter not declared yet a compile error. */
type KnownParents<T, W extends WhenOption<T>> = {
  when?: { [K in Exclude<keyof W['when'], keyof T>]: never };
};
type Simplify<T> = { [K in keyof T]: T[K] } & {};
/** `T` plus parameter `K` of type `V`, optional when it has a condition. */
type With<T, K extends string, W, V> = Simplify<
  T & (W extends { when: object } ? { [P in K]?: V } : { [P in K]: V })
>;

/**
 * A typed builder: each call adds a parameter and widens the params type, so
 * `space().float('lr', 1e-4, 1, { log: true }).categorical('opt', ['sgd', 'adam'] as const).build()`
 * yields a `TypedSpace<{ lr: number; opt: 'sgd' | 'adam' }>`. Conditional parameters are optional.
 */
export class SpaceBuilder<T extends Params = Record<never, never>> {
  readonly #defs: ParamDef[];

  constructor(defs: ParamDef[] = []) {
    this.#defs = defs;
  }

  #add<U extends Params>(def: ParamDef): SpaceBuilder<U> {
    return new SpaceBuilder<U>([...this.#defs, def]);
  }

  float<K extends string, W extends WhenOption<T>>(
    name: K,
    low: number,
    high: number,
    options?: { log?: boolean; step?: number } & W & KnownParents<T, W>,
  ): SpaceBuilder<With<T, K, W, number>> {
    return this.#add({
      name,
      type: 'float',
      low,
      high,
      log: options?.log ?? false,
      ...(options?.step !== undefined ? { step: options.step } : {}),
      ...whenOf(options?.when),
    });
  }

  int<K extends string, W extends WhenOption<T>>(
    name: K,
    low: number,
    high: number,
    options?: { log?: boolean; step?: number } & W & KnownParents<T, W>,
  ): SpaceBuilder<With<T, K, W, number>> {
    return this.#add({
      name,
      type: 'int',
      low,
      high,
      log: options?.log ?? false,
      step: options?.step ?? 1,
      ...whenOf(options?.when),
    });
  }

  categorical<K extends string, const C extends readonly Choice[], W extends WhenOption<T>>(
    name: K,
    choices: C,
    options?: W & KnownParents<T, W>,
  ): SpaceBuilder<With<T, K, W, C[number]>> {
    return this.#add({ name, type: 'categorical', choices, ...whenOf(options?.when) });
  }

  /** Validates and returns the space; throws `InputError` naming a bad parameter. */
  build(): TypedSpace<T> {
    return new SearchSpace(this.#defs) as TypedSpace<T>;
  }
}

function whenOf(when: Record<string, unknown> | undefined): { when?: Condition } {
  if (when === undefined) return {};
  const out: Record<string, readonly ParamValue[]> = {};
  for (const [k, v] of Object.entries(when)) {
    if (v === undefined) continue;
    out[k] = Array.isArray(v) ? (v as ParamValue[]) : [v as ParamValue];
  }
  return { when: out };
}

/** A search space that remembers the TypeScript type of its params. */
export type TypedSpace<T extends Params> = SearchSpace & { readonly __params?: T };

/** The params type of a space built with {@link space}: `ParamsOf<typeof s>`. */
export type ParamsOf<S> = S extends TypedSpace<infer T> ? T : Params;

/** Starts a typed space builder. */
export function space(): SpaceBuilder {
  return new SpaceBuilder();
}
