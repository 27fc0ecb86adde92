/**
 * Tree-structured Parzen Estimator (TPE). Finished trials are ranked and split into a good
 * group (the best `gamma(n)`) and the rest; each group gets a mixture with one kernel per
 * trial plus a wide prior kernel, candidates are drawn from the good mixture, and the one
 * with the highest ratio of good to rest density wins. The first trials are the random
 * sampler's draws.
 *
 * Numeric parameters use truncated Gaussian kernels in the space's internal coordinate
 * (log scale where asked), whose width is the larger distance to a neighbouring trial in
 * that coordinate, floored at range / min(100, n + 1) for the n trials seen; discrete values
 * are scored by the probability of their bin. Categorical kernels put most of their mass on
 * the observed choice. With `multivariate`, the parameters active under the same condition
 * are scored by their joint density (one kernel per trial spans all of them), which follows
 * correlated parameters, while a candidate still takes each parameter from a kernel of its
 * own: recombining the coordinates of different good trials explores more than drawing
 * whole kernels. Running trials join the rest as the worst ones (constant liar), so
 * concurrent suggestions spread out.
 */
import type { FinishedTrial, PendingTrial, Sampler } from '../contract.js';
import { InputError } from '../../protocol/errors.js';
import { Rng } from '../rng.js';
import { SearchSpace, type ParamDef, type ParamValue, type Params } from '../space.js';
import { sampleParams } from './random.js';

export interface TpeSamplerOptions {
  /** Seed of every draw; trial `n` draws from stream `n` of it (default: 0). */
  seed?: number;
  /** Finished trials (complete or pruned) sampled at random before TPE starts (default: 10). */
  startupTrials?: number;
  /** Candidates drawn from the good density per suggest; the best ratio wins (default: 24). */
  candidates?: number;
  /**
   * Size of the good group out of `n` ranked trials: a fraction in (0, 1] (`ceil(gamma * n)`)
   * or a function of `n` (default: `min(ceil(0.1 * n), 25)`).
   */
  gamma?: number | ((n: number) => number);
  /** Weight of the prior kernel, which spans the whole space, against one trial's (default: 1). */
  priorWeight?: number;
  /**
   * Model the parameters that are active under the same condition jointly rather than each
   * on its own (default: true).
   */
  multivariate?: boolean;
  /** Count running trials as the worst ones, so parallel suggestions avoid each other (default: true). */
  constantLiar?: boolean;
}

const LOG_SQRT_2PI = 0.5 * Math.log(2 * Math.PI);
const LOG_HALF = Math.log(0.5);

/** log(erfc(x)) for x ≥ 0 without underflow (Chebyshev fit from Numerical Recipes, relative error < 1.2e-7). */
function logErfcPos(x: number): number {
  const t = 1 / (1 + 0.5 * x);
  const poly =
    -1.26551223 +
    t *
      (1.00002368 +
        t *
          (0.37409196 +
            t *
              (0.09678418 +
                t *
                  (-0.18628806 +
                    t *
                      (0.27886807 +
                        t *
                          (-1.13520398 +
                            t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
  return Math.log(t) - x * x + poly;
}

function erfc(x: number): number {
  const r = Math.exp(logErfcPos(Math.abs(x)));
  return x >= 0 ? r : 2 - r;
}

/** log(Φ(b) − Φ(a)) for the standard normal, accurate in both tails. */
function logGaussMass(a: number, b: number): number {
  if (!(b > a)) return -Infinity;
  if (a < 0 && b > 0) {
    return Math.log(1 - 0.5 * erfc(-a * Math.SQRT1_2) - 0.5 * erfc(b * Math.SQRT1_2));
  }
  // Both bounds in one tail: mirror the lower tail onto the upper one, near ≤ far.
  const near = a >= 0 ? a : -b;
  const far = a >= 0 ? b : -a;
  const ln = logErfcPos(near * Math.SQRT1_2);
  // The tail beyond `far` is below e^-((far² - near²) / 2) ≤ e^-((far - near) near) of the
  // tail beyond `near`: past e^-40 it cannot change the result.
  if ((far - near) * near > 40) return LOG_HALF + ln;
  const lf = far === Infinity ? -Infinity : logErfcPos(far * Math.SQRT1_2);
  return LOG_HALF + ln + Math.log1p(-Math.exp(lf - ln));
}

/** One modelled parameter of a group. */
interface Dim {
  /** Index of the parameter in `space.params`. */
  readonly index: number;
  readonly def: ParamDef;
  /** `cont`: continuous density; `disc`: probability of the value's bin; `cat`: categorical. */
  readonly kind: 'cont' | 'disc' | 'cat';
  /** Internal bounds (numeric). */
  readonly lo: number;
  readonly hi: number;
  /** Number of choices (categorical). */
  readonly choices: number;
}

/** Parameters active under the same condition, sampled together (one parameter each when univariate). */
interface Group {
  readonly first: ParamDef;
  readonly dims: readonly Dim[];
  /** Parameters with a single possible value: set, never modelled. */
  readonly fixed: readonly { readonly def: ParamDef; readonly value: ParamValue }[];
}

/** A usable finished trial as the model sees it. */
interface Observation {
  /** Internal coordinate (numeric) or choice index (categorical) per space parameter; NaN when absent. */
  readonly coords: Float64Array;
  /** 0: complete, 1: pruned with a value, 2: pruned without one. */
  readonly tier: number;
  /** Minus the last step of a pruned trial (the further it got, the better it ranks), else 0. */
  readonly negStep: number;
  readonly value: number;
}

function compareObs(a: Observation, b: Observation): number {
  if (a.tier !== b.tier) return a.tier - b.tier;
  if (a.negStep !== b.negStep) return a.negStep - b.negStep;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

/** Weight of the `position`-th oldest of `count` kernels: beyond the newest 25, older ones ramp down to 1/count. */
function ageWeight(position: number, count: number): number {
  const ramp = count - 25;
  if (position >= ramp) return 1;
  return ramp === 1 ? 1 / count : 1 / count + ((1 - 1 / count) * position) / (ramp - 1);
}

/** A mixture over one group; per-dim arrays are laid out [dim * m + component]. */
interface Mixture {
  readonly m: number;
  /** Cumulative normalized weights, for picking a component. */
  readonly cum: Float64Array;
  /** Per component: log weight minus the normalizers of its numeric kernels. */
  readonly logConst: Float64Array;
  /** Kernel centre (numeric) or observed choice index, −1 for the prior (categorical). */
  readonly centre: Float64Array;
  readonly sigma: Float64Array;
  readonly inv: Float64Array;
  /** Per dim (categorical): log p of the observed choice, of another one, and of any under the prior. */
  readonly logHit: Float64Array;
  readonly logMiss: Float64Array;
  readonly logUniform: Float64Array;
  /** Scratch for `logPdf`. */
  readonly terms: Float64Array;
}

/** Which mixture a history trial feeds in one suggest. */
const Side = { None: 0, Good: 1, Rest: 2 } as const;

/** TPE search over any space (conditional parameters included); see the module comment. */
export class TpeSampler implements Sampler {
  readonly #space: SearchSpace;
  readonly #seed: number;
  readonly #startup: number;
  readonly #candidates: number;
  readonly #gamma: (n: number) => number;
  readonly #priorWeight: number;
  readonly #liar: boolean;
  readonly #groups: readonly Group[];
  /** Usable trials (complete, pruned) in the order they were told. */
  readonly #history: Observation[] = [];
  /** Indices into `#history`, best first; equal ranks keep the order they were told in. */
  readonly #ranked: number[] = [];
  /** Per numeric parameter: indices into `#history` of the trials that set it, by internal coordinate. */
  readonly #sorted: (number[] | undefined)[];

  constructor(space: SearchSpace, options: TpeSamplerOptions = {}) {
    this.#space = space;
    this.#seed = checkOption('seed', options.seed ?? 0, (v) => Number.isFinite(v));
    this.#startup = checkOption(
      'startupTrials',
      options.startupTrials ?? 10,
      (v) => Number.isInteger(v) && v >= 0,
    );
    this.#candidates = checkOption(
      'candidates',
      options.candidates ?? 24,
      (v) => Number.isInteger(v) && v >= 1,
    );
    this.#priorWeight = checkOption(
      'priorWeight',
      options.priorWeight ?? 1,
      (v) => Number.isFinite(v) && v > 0,
    );
    const gamma = options.gamma;
    if (gamma === undefined) this.#gamma = (n) => Math.min(Math.ceil(0.1 * n), 25);
    else if (typeof gamma === 'function') this.#gamma = gamma;
    else {
      const g = checkOption('gamma', gamma, (v) => v > 0 && v <= 1);
      this.#gamma = (n) => Math.ceil(g * n);
    }
    this.#liar = checkFlag('constantLiar', options.constantLiar ?? true);
    this.#groups = buildGroups(space, checkFlag('multivariate', options.multivariate ?? true));
    this.#sorted = space.params.map((def) => (def.type === 'categorical' ? undefined : []));
  }

  suggest(number: number, running: readonly PendingTrial[]): Params {
    const rng = new Rng(this.#seed, number);
    if (this.#history.length < this.#startup) return sampleParams(this.#space, rng);
    const pending = this.#liar
      ? running.filter((r) => r.number !== number).map((r) => this.#encode(r.params))
      : [];
    const params: Params = {};
    for (const group of this.#groups) {
      if (!this.#space.isActive(group.first, params)) continue;
      for (const { def, value } of group.fixed) params[def.name] = value;
      if (group.dims.length > 0) this.#sampleGroup(group, pending, rng, params);
    }
    return params;
  }

  tell(trial: FinishedTrial): void {
    if (trial.state !== 'complete' && trial.state !== 'pruned') return;
    const complete = trial.state === 'complete';
    const tier = complete ? 0 : trial.value === undefined ? 2 : 1;
    const negStep = tier === 1 ? -(trial.step ?? 0) : 0;
    const value = trial.value === undefined || Number.isNaN(trial.value) ? Infinity : trial.value;
    const obs: Observation = { coords: this.#encode(trial.params), tier, negStep, value };
    const h = this.#history.length;
    this.#history.push(obs);
    insertSorted(this.#ranked, h, (i) => compareObs(this.#history[i] as Observation, obs) <= 0);
    this.#sorted.forEach((list, p) => {
      const x = obs.coords[p] as number;
      if (list === undefined || Number.isNaN(x)) return;
      insertSorted(list, h, (i) => ((this.#history[i] as Observation).coords[p] as number) <= x);
    });
  }

  /** Internal coordinates of `params`; unknown or out-of-domain values count as absent, numbers are clamped. */
  #encode(params: Readonly<Params>): Float64Array {
    const defs = this.#space.params;
    const coords = new Float64Array(defs.length).fill(NaN);
    defs.forEach((def, i) => {
      const v = params[def.name];
      if (v === undefined) return;
      if (def.type === 'categorical') {
        const k = def.choices.indexOf(v);
        if (k >= 0) coords[i] = k;
      } else if (typeof v === 'number' && Number.isFinite(v) && (!def.log || v > 0)) {
        const [lo, hi] = SearchSpace.internalBounds(def);
        coords[i] = Math.min(Math.max(SearchSpace.toInternal(def, v), lo), hi);
      }
    });
    return coords;
  }

  #sampleGroup(group: Group, pending: readonly Float64Array[], rng: Rng, params: Params): void {
    const dims = group.dims;
    const history = this.#history;
    const size = history.length;
    // A trial takes part when it set every parameter of the group (a row with any absent,
    // possible only for values outside the space, would have no kernel centre).
    const takesPart = (coords: Float64Array): boolean =>
      dims.every((dim) => !Number.isNaN(coords[dim.index] as number));
    const side = new Uint8Array(size);
    const slot = new Int32Array(size);
    // The good group: the best gamma(seen) of the `seen` trials that take part.
    let seen = 0;
    for (let i = 0; i < size; i++) {
      if (!takesPart((history[i] as Observation).coords)) continue;
      side[i] = Side.Rest;
      seen++;
    }
    const wanted = Math.floor(this.#gamma(seen));
    if (!Number.isFinite(wanted))
      throw new InputError(`TPE sampler: gamma(${seen}) must be a finite number (got ${wanted})`);
    const nGood = Math.min(Math.max(wanted, seen > 0 ? 1 : 0), seen);
    for (let r = 0, taken = 0; r < this.#ranked.length && taken < nGood; r++) {
      const i = this.#ranked[r] as number;
      if (side[i] === Side.None) continue;
      side[i] = Side.Good;
      taken++;
    }
    // Both groups in the order trials were told (older ones weigh less), running trials last.
    const good: Float64Array[] = [];
    const rest: Float64Array[] = [];
    for (let i = 0; i < size; i++) {
      const coords = (history[i] as Observation).coords;
      if (side[i] === Side.Good) {
        slot[i] = good.length;
        good.push(coords);
      } else if (side[i] === Side.Rest) {
        slot[i] = rest.length;
        rest.push(coords);
      }
    }
    const liars = pending.filter(takesPart);
    const floorDivisor = Math.min(100, seen + 1);
    const l = this.#mixture(dims, good, [], { side, slot, id: Side.Good }, floorDivisor);
    const g = this.#mixture(dims, rest, liars, { side, slot, id: Side.Rest }, floorDivisor);

    const d = dims.length;
    const x = new Float64Array(d);
    const best = new Float64Array(d);
    const lower = new Float64Array(d);
    const upper = new Float64Array(d);
    let bestScore = -Infinity;
    for (let c = 0; c < this.#candidates; c++) {
      drawFrom(l, dims, rng, x);
      snap(dims, x, lower, upper);
      const score = logPdf(l, dims, x, lower, upper) - logPdf(g, dims, x, lower, upper);
      if (c === 0 || score > bestScore) {
        bestScore = score;
        best.set(x);
      }
    }
    dims.forEach((dim, k) => {
      const def = dim.def;
      const v = best[k] as number;
      params[def.name] =
        def.type === 'categorical'
          ? (def.choices[v] as ParamValue)
          : SearchSpace.fromInternal(def, v);
    });
  }

  /**
   * The mixture of `rows` (history trials marked `members.id`, in slot order), then `extra`
   * rows (running trials), then the prior kernel.
   */
  #mixture(
    dims: readonly Dim[],
    rows: readonly Float64Array[],
    extra: readonly Float64Array[],
    members: { side: Uint8Array; slot: Int32Array; id: number },
    floorDivisor: number,
  ): Mixture {
    const n = rows.length + extra.length;
    const m = n + 1;
    const d = dims.length;
    const all = extra.length === 0 ? rows : [...rows, ...extra];
    const w = new Float64Array(m);
    let total = this.#priorWeight;
    for (let j = 0; j < n; j++) total += w[j] = ageWeight(j, n);
    w[n] = this.#priorWeight;
    const cum = new Float64Array(m);
    const logConst = new Float64Array(m);
    let acc = 0;
    for (let j = 0; j < m; j++) {
      acc += (w[j] as number) / total;
      cum[j] = acc;
      logConst[j] = Math.log((w[j] as number) / total);
    }
    cum[m - 1] = 1;
    const centre = new Float64Array(m * d);
    const sigma = new Float64Array(m * d);
    const inv = new Float64Array(m * d);
    const logHit = new Float64Array(d);
    const logMiss = new Float64Array(d);
    const logUniform = new Float64Array(d);
    dims.forEach((dim, k) => {
      const off = k * m;
      for (let j = 0; j < n; j++) centre[off + j] = (all[j] as Float64Array)[dim.index] as number;
      if (dim.kind === 'cat') {
        const eps = this.#priorWeight / m;
        const norm = 1 + dim.choices * eps;
        logHit[k] = Math.log((1 + eps) / norm);
        logMiss[k] = Math.log(eps / norm);
        logUniform[k] = -Math.log(dim.choices);
        centre[off + n] = -1;
        return;
      }
      const range = dim.hi - dim.lo;
      centre[off + n] = 0.5 * (dim.lo + dim.hi);
      this.#neighbourWidths(
        dim,
        centre.subarray(off, off + m),
        rows.length,
        members,
        sigma.subarray(off, off + m),
      );
      const floor = range / floorDivisor;
      for (let j = 0; j < m; j++) {
        const c = centre[off + j] as number;
        const s = j < n ? Math.min(Math.max(sigma[off + j] as number, floor), range) : range;
        sigma[off + j] = s;
        inv[off + j] = 1 / s;
        const a = (dim.lo - c) / s;
        const b = (dim.hi - c) / s;
        // Mass inside the bounds; 1 to double precision when both are 8.5 widths away or more.
        const logZ = a < -8.5 && b > 8.5 ? 0 : logGaussMass(a, b);
        logConst[j] =
          (logConst[j] as number) - logZ - (dim.kind === 'cont' ? Math.log(s) + LOG_SQRT_2PI : 0);
      }
    });
    return {
      m,
      cum,
      logConst,
      centre,
      sigma,
      inv,
      logHit,
      logMiss,
      logUniform,
      terms: new Float64Array(m),
    };
  }

  /**
   * Each kernel's larger distance to a neighbouring centre (the prior's centre counts too);
   * the outermost look inwards only. Walks the parameter's sorted history once instead of
   * sorting: `centres` holds history rows at slots [0, historyRows), then extra rows, then
   * the prior.
   */
  #neighbourWidths(
    dim: Dim,
    centres: Float64Array,
    historyRows: number,
    members: { side: Uint8Array; slot: Int32Array; id: number },
    out: Float64Array,
  ): void {
    const m = centres.length;
    // Extra rows and the prior are few: sort just them and merge them into the walk.
    const extras = Array.from({ length: m - historyRows }, (_, i) => historyRows + i).sort(
      (a, b) => (centres[a] as number) - (centres[b] as number),
    );
    let e = 0;
    let count = 0;
    let prevSlot = -1;
    let prevValue = 0;
    let prevLeft = -Infinity;
    const visit = (slot: number): void => {
      const v = centres[slot] as number;
      if (count > 0) {
        const gap = v - prevValue;
        out[prevSlot] = Math.max(prevLeft, gap);
        prevLeft = gap;
      }
      prevSlot = slot;
      prevValue = v;
      count++;
    };
    const list = this.#sorted[dim.index] as number[];
    const history = this.#history;
    for (const h of list) {
      if (members.side[h] !== members.id) continue;
      const v = (history[h] as Observation).coords[dim.index] as number;
      while (e < extras.length && (centres[extras[e] as number] as number) < v)
        visit(extras[e++] as number);
      visit(members.slot[h] as number);
    }
    while (e < extras.length) visit(extras[e++] as number);
    if (count > 1) out[prevSlot] = prevLeft;
  }
}

function checkOption(name: string, value: number, ok: (v: number) => boolean): number {
  if (typeof value !== 'number' || !ok(value)) {
    throw new InputError(`TPE sampler: option ${name} is invalid (got ${JSON.stringify(value)})`);
  }
  return value;
}

function checkFlag(name: string, value: boolean): boolean {
  if (typeof value !== 'boolean') {
    throw new InputError(
      `TPE sampler: option ${name} must be true or false (got ${JSON.stringify(value)})`,
    );
  }
  return value;
}

/** Inserts `item` into `list` after every element for which `before` holds (a prefix of the list). */
function insertSorted(list: number[], item: number, before: (element: number) => boolean): void {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (before(list[mid] as number)) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, item);
}

function buildGroups(space: SearchSpace, multivariate: boolean): Group[] {
  const groups: { first: ParamDef; dims: Dim[]; fixed: { def: ParamDef; value: ParamValue }[] }[] =
    [];
  const byCondition = new Map<string, (typeof groups)[number]>();
  space.params.forEach((def, index) => {
    // Parameters with the same condition are active in exactly the same trials.
    const condition = JSON.stringify(
      Object.entries(def.when ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    );
    let group = multivariate ? byCondition.get(condition) : undefined;
    if (group === undefined) {
      group = { first: def, dims: [], fixed: [] };
      groups.push(group);
      if (multivariate) byCondition.set(condition, group);
    }
    if (def.type === 'categorical') {
      if (def.choices.length === 1) group.fixed.push({ def, value: def.choices[0] as ParamValue });
      else group.dims.push({ index, def, kind: 'cat', lo: 0, hi: 0, choices: def.choices.length });
      return;
    }
    const [lo, hi] = SearchSpace.internalBounds(def);
    if (!(hi > lo)) {
      group.fixed.push({ def, value: SearchSpace.fromInternal(def, lo) });
      return;
    }
    const discrete = def.type === 'int' || def.step !== undefined;
    group.dims.push({ index, def, kind: discrete ? 'disc' : 'cont', lo, hi, choices: 0 });
  });
  return groups;
}

/** A component of the mixture, drawn by weight. */
function pickComponent(mix: Mixture, rng: Rng): number {
  const u = rng.next();
  let lo = 0;
  let hi = mix.m - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((mix.cum[mid] as number) > u) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/**
 * Draws a candidate into `x` (internal coordinates, choice indices), each dim from a
 * component of its own: candidates recombine the coordinates of different good trials,
 * which explores more than drawing whole kernels, while the joint density still scores them.
 */
function drawFrom(mix: Mixture, dims: readonly Dim[], rng: Rng, x: Float64Array): void {
  const m = mix.m;
  dims.forEach((dim, k) => {
    const j = pickComponent(mix, rng);
    const c = mix.centre[k * m + j] as number;
    if (dim.kind === 'cat') {
      const r = rng.next();
      if (c < 0) {
        x[k] = Math.min(Math.floor(r * dim.choices), dim.choices - 1);
        return;
      }
      const hit = Math.exp(mix.logHit[k] as number);
      if (r < hit) x[k] = c;
      else {
        // Uniform over the other choices.
        const other = Math.min(
          Math.floor(((r - hit) / (1 - hit)) * (dim.choices - 1)),
          dim.choices - 2,
        );
        x[k] = other >= c ? other + 1 : other;
      }
      return;
    }
    // Rejection sampling: every centre lies inside the bounds, so a draw lands there with
    // probability above 1/3 and 64 failures in a row practically never happen.
    const s = mix.sigma[k * m + j] as number;
    let v = c;
    for (let attempt = 0; attempt < 64; attempt++) {
      const t = c + s * rng.normal();
      if (t >= dim.lo && t <= dim.hi) {
        v = t;
        break;
      }
    }
    x[k] = v;
  });
}

/** Rounds discrete dims to their grid and records each one's bin in `lower`/`upper`. */
function snap(
  dims: readonly Dim[],
  x: Float64Array,
  lower: Float64Array,
  upper: Float64Array,
): void {
  dims.forEach((dim, k) => {
    const def = dim.def;
    if (dim.kind !== 'disc' || def.type === 'categorical') return;
    const v = SearchSpace.fromInternal(def, x[k] as number);
    const half = (def.type === 'int' ? def.step : (def.step as number)) / 2;
    x[k] = SearchSpace.toInternal(def, v);
    lower[k] = Math.max(def.log ? Math.log(v - half) : v - half, dim.lo);
    upper[k] = Math.min(def.log ? Math.log(v + half) : v + half, dim.hi);
  });
}

/** log density of the mixture at `x`, with the log probability of the bin for discrete dims. */
function logPdf(
  mix: Mixture,
  dims: readonly Dim[],
  x: Float64Array,
  lower: Float64Array,
  upper: Float64Array,
): number {
  const { m, terms, centre, inv } = mix;
  terms.set(mix.logConst);
  for (let k = 0; k < dims.length; k++) {
    const kind = (dims[k] as Dim).kind;
    const off = k * m;
    const xk = x[k] as number;
    if (kind === 'cont') {
      for (let j = 0; j < m; j++) {
        const z = (xk - (centre[off + j] as number)) * (inv[off + j] as number);
        terms[j] = (terms[j] as number) - 0.5 * z * z;
      }
    } else if (kind === 'disc') {
      const a = lower[k] as number;
      const b = upper[k] as number;
      for (let j = 0; j < m; j++) {
        const c = centre[off + j] as number;
        const iv = inv[off + j] as number;
        terms[j] = (terms[j] as number) + logGaussMass((a - c) * iv, (b - c) * iv);
      }
    } else {
      const hit = mix.logHit[k] as number;
      const miss = mix.logMiss[k] as number;
      const uniform = mix.logUniform[k] as number;
      for (let j = 0; j < m; j++) {
        const c = centre[off + j] as number;
        terms[j] = (terms[j] as number) + (c < 0 ? uniform : c === xk ? hit : miss);
      }
    }
  }
  let max = -Infinity;
  for (let j = 0; j < m; j++) if ((terms[j] as number) > max) max = terms[j] as number;
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let j = 0; j < m; j++) {
    const t = (terms[j] as number) - max;
    // Terms below e^-40 of the largest add under 1e-14 (relative) even ten thousand at a time.
    if (t > -40) sum += Math.exp(t);
  }
  return max + Math.log(sum);
}
