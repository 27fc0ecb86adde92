/**
 * CMA-ES (covariance matrix adaptation evolution strategy, with active negative weights as in
 * Hansen's tutorial) for spaces of float and int parameters without conditions. It works in a
 * normalized coordinate: each parameter's internal interval (log scale where asked, ints widened
 * by half a step) mapped onto [0, 1]. Candidates outside the unit cube are redrawn, and clipped
 * after 100 tries; ints and stepped floats are rounded by `SearchSpace.fromInternal`.
 *
 * Asynchronous use. `suggest` is pure: trial `n` is the deterministic draw of `new Rng(seed, n)`
 * from the current distribution, and only `tell` changes state, so replaying the tells of an
 * experiment in a fresh sampler rebuilds it exactly. A told trial belongs to the current
 * generation when drawing trial `n` from the current distribution reproduces its params; it then
 * joins the generation with that exact (unrounded) point. A trial proposed by an earlier
 * generation, or not by this sampler at all, joins as an injected solution: its normalized
 * params with the step from the mean clipped to Mahalanobis length sqrt(n) + 2n/(n+2) (Hansen,
 * "Injecting external solutions into CMA-ES", 2011), so late results from parallel workers are
 * used rather than wasted. The distribution is updated once `popsize` trials have joined; the
 * order of tells within a generation does not matter (ranks tie-break on trial number). Failed
 * trials and trials without a value are ignored, pruned trials count with their last value.
 */
import { InputError } from '../../protocol/errors.js';
import type { FinishedTrial, PendingTrial, Sampler } from '../contract.js';
import { Rng } from '../rng.js';
import { SearchSpace, type NumericParam, type Params } from '../space.js';
import { sampleParams } from './random.js';

export interface CmaEsSamplerOptions {
  /** Seed of every draw (default: 0). */
  seed?: number;
  /** Initial step size in the normalized [0, 1] coordinate of each parameter (default: 1/6). */
  sigma0?: number;
  /** Candidates per generation, at least 2 (default: 4 + floor(3 ln n) for n parameters). */
  popsize?: number;
  /**
   * Trials numbered below this are drawn uniformly at random; once all of them are told, the
   * search starts centered on the best of them instead of the middle of the space (default: 0).
   */
  startupTrials?: number;
}

/** Redraws of a candidate that fell outside the unit cube before it is clipped. */
const MAX_RESAMPLE = 100;
const EPS = 1e-8;
const SIGMA_MAX = 1e32;

interface Solution {
  readonly number: number;
  /** Normalized point in [0, 1]^n. */
  readonly x: Float64Array;
  readonly value: number;
  /** Not drawn from the distribution the generation is updated from. */
  readonly injected: boolean;
}

/** CMA-ES over the unit cube of a continuous space; asynchronous and replayable (see above). */
export class CmaEsSampler implements Sampler {
  readonly #space: SearchSpace;
  readonly #defs: readonly NumericParam[];
  readonly #lo: Float64Array;
  readonly #width: Float64Array;
  readonly #n: number;
  readonly #seed: number;
  readonly #startupTrials: number;
  readonly #lambda: number;
  readonly #mu: number;
  readonly #weights: Float64Array;
  readonly #weightSum: number;
  readonly #muEff: number;
  readonly #c1: number;
  readonly #cmu: number;
  readonly #cSigma: number;
  readonly #dSigma: number;
  readonly #cc: number;
  readonly #chiN: number;

  #mean: Float64Array;
  #sigma: number;
  #cov: Float64Array;
  #pSigma: Float64Array;
  #pc: Float64Array;
  /** Eigenvectors of `#cov` as columns (row-major n×n) and the square roots of its eigenvalues. */
  #basis: Float64Array;
  #scales: Float64Array;
  #generation = 0;
  #pending: Solution[] = [];
  #startupTold = 0;
  #startupBest:
    { readonly value: number; readonly number: number; readonly x: Float64Array } | undefined;

  /** Throws `InputError` when `space` has a categorical or conditional parameter or an option is out of range. */
  constructor(space: SearchSpace, options: CmaEsSamplerOptions = {}) {
    for (const def of space.params) {
      if (def.type === 'categorical' || def.when !== undefined) {
        const kind = def.type === 'categorical' ? 'categorical' : 'conditional';
        throw new InputError(
          `CMA-ES needs float or int parameters without conditions; "${def.name}" is ${kind}`,
        );
      }
    }
    const n = space.params.length;
    const seed = options.seed ?? 0;
    if (!Number.isFinite(seed)) throw new InputError(`CMA-ES seed must be a number (got ${seed})`);
    const sigma0 = options.sigma0 ?? 1 / 6;
    if (!(Number.isFinite(sigma0) && sigma0 > 0)) {
      throw new InputError(`CMA-ES sigma0 must be a positive number (got ${sigma0})`);
    }
    const lambda = options.popsize ?? 4 + Math.floor(3 * Math.log(n));
    if (!(Number.isInteger(lambda) && lambda >= 2)) {
      throw new InputError(`CMA-ES popsize must be an integer of at least 2 (got ${lambda})`);
    }
    const startupTrials = options.startupTrials ?? 0;
    if (!(Number.isInteger(startupTrials) && startupTrials >= 0)) {
      throw new InputError(
        `CMA-ES startupTrials must be a non-negative integer (got ${startupTrials})`,
      );
    }
    this.#space = space;
    this.#defs = space.params as readonly NumericParam[];
    this.#n = n;
    this.#seed = seed;
    this.#startupTrials = startupTrials;
    this.#lo = new Float64Array(n);
    this.#width = new Float64Array(n);
    this.#defs.forEach((def, i) => {
      const [lo, hi] = SearchSpace.internalBounds(def);
      this.#lo[i] = lo;
      this.#width[i] = hi - lo;
    });

    // Strategy constants, as in Hansen's tutorial (arXiv:1604.00772) with active weights.
    const mu = Math.floor(lambda / 2);
    const raw = Array.from(
      { length: lambda },
      (_, i) => Math.log((lambda + 1) / 2) - Math.log(i + 1),
    );
    const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
    const effective = (xs: readonly number[]): number => sum(xs) ** 2 / sum(xs.map((w) => w * w));
    const muEff = effective(raw.slice(0, mu));
    const muEffMinus = effective(raw.slice(mu));
    const c1 = 2 / ((n + 1.3) ** 2 + muEff);
    const cmu = Math.min(1 - c1 - 1e-8, (2 * (muEff - 2 + 1 / muEff)) / ((n + 2) ** 2 + muEff));
    const minAlpha = Math.min(
      1 + c1 / cmu,
      1 + (2 * muEffMinus) / (muEff + 2),
      (1 - c1 - cmu) / (n * cmu),
    );
    const positive = sum(raw.filter((w) => w > 0));
    const negative = -sum(raw.filter((w) => w < 0));
    this.#weights = Float64Array.from(raw, (w) =>
      w >= 0 ? w / positive : (minAlpha * w) / negative,
    );
    this.#weightSum = sum(Array.from(this.#weights));
    this.#lambda = lambda;
    this.#mu = mu;
    this.#muEff = muEff;
    this.#c1 = c1;
    this.#cmu = cmu;
    this.#cSigma = (muEff + 2) / (n + muEff + 5);
    this.#dSigma = 1 + 2 * Math.max(0, Math.sqrt((muEff - 1) / (n + 1)) - 1) + this.#cSigma;
    this.#cc = (4 + muEff / n) / (n + 4 + (2 * muEff) / n);
    this.#chiN = Math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n));

    this.#mean = new Float64Array(n).fill(0.5);
    this.#sigma = sigma0;
    this.#cov = identity(n);
    this.#pSigma = new Float64Array(n);
    this.#pc = new Float64Array(n);
    this.#basis = identity(n);
    this.#scales = new Float64Array(n).fill(1);
  }

  /** Generations completed so far (distribution updates). */
  get generation(): number {
    return this.#generation;
  }

  /** Candidates per generation. */
  get popsize(): number {
    return this.#lambda;
  }

  suggest(number: number, _running: readonly PendingTrial[]): Params {
    if (number < this.#startupTrials) return sampleParams(this.#space, new Rng(this.#seed, number));
    return this.#toParams(this.#draw(number));
  }

  tell(trial: FinishedTrial): void {
    const { number, value } = trial;
    if (number < this.#startupTrials) {
      this.#tellStartup(trial);
      return;
    }
    if (trial.state === 'failed' || value === undefined || Number.isNaN(value)) return;
    if (this.#pending.some((s) => s.number === number)) return;
    const x = this.#draw(number);
    if (sameParams(this.#toParams(x), trial.params)) {
      this.#pending.push({ number, x, value, injected: false });
    } else {
      const injected = this.#normalize(trial.params);
      if (injected === undefined) return;
      this.#pending.push({ number, x: injected, value, injected: true });
    }
    if (this.#pending.length >= this.#lambda) {
      const solutions = this.#pending;
      this.#pending = [];
      this.#update(solutions);
    }
  }

  #tellStartup(trial: FinishedTrial): void {
    if (this.#startupTold >= this.#startupTrials) return;
    this.#startupTold++;
    const { value } = trial;
    if (trial.state !== 'failed' && value !== undefined && !Number.isNaN(value)) {
      const x = this.#normalize(trial.params);
      const best = this.#startupBest;
      const better =
        best === undefined ||
        value < best.value ||
        (value === best.value && trial.number < best.number);
      if (x !== undefined && better) this.#startupBest = { value, number: trial.number, x };
    }
    if (this.#startupTold === this.#startupTrials && this.#startupBest !== undefined) {
      this.#mean = Float64Array.from(this.#startupBest.x);
      // Candidates drawn around the old center no longer come from the distribution.
      this.#pending = this.#pending.map((s) => ({ ...s, injected: true }));
    }
  }

  /** Trial `number`'s candidate under the current distribution, in the unit cube. */
  #draw(number: number): Float64Array {
    const n = this.#n;
    const rng = new Rng(this.#seed, number);
    const x = new Float64Array(n);
    const z = new Float64Array(n);
    for (let attempt = 0; ; attempt++) {
      for (let j = 0; j < n; j++) z[j] = (this.#scales[j] as number) * rng.normal();
      let inside = true;
      for (let i = 0; i < n; i++) {
        let y = 0;
        for (let j = 0; j < n; j++) y += (this.#basis[i * n + j] as number) * (z[j] as number);
        const xi = (this.#mean[i] as number) + this.#sigma * y;
        x[i] = xi;
        if (!(xi >= 0 && xi <= 1)) inside = false;
      }
      if (inside) return x;
      if (attempt + 1 >= MAX_RESAMPLE) break;
    }
    for (let i = 0; i < n; i++) x[i] = Math.min(1, Math.max(0, x[i] as number));
    return x;
  }

  #toParams(x: Float64Array): Params {
    const params: Params = {};
    this.#defs.forEach((def, i) => {
      const internal = (this.#lo[i] as number) + (x[i] as number) * (this.#width[i] as number);
      params[def.name] = SearchSpace.fromInternal(def, internal);
    });
    return params;
  }

  /** The normalized point of `params`, or undefined when one of them is not a number. */
  #normalize(params: Params): Float64Array | undefined {
    const x = new Float64Array(this.#n);
    for (let i = 0; i < this.#n; i++) {
      const def = this.#defs[i] as NumericParam;
      const v = params[def.name];
      if (typeof v !== 'number' || !Number.isFinite(v) || (def.log && v <= 0)) return undefined;
      const width = this.#width[i] as number;
      const u =
        width > 0 ? (SearchSpace.toInternal(def, v) - (this.#lo[i] as number)) / width : 0.5;
      x[i] = Math.min(1, Math.max(0, u));
    }
    return x;
  }

  /** `C^(-1/2) v = B D^(-1) Bᵀ v`. */
  #whiten(v: Float64Array): Float64Array {
    const n = this.#n;
    const t = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let i = 0; i < n; i++) s += (this.#basis[i * n + j] as number) * (v[i] as number);
      t[j] = s / (this.#scales[j] as number);
    }
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < n; j++) s += (this.#basis[i * n + j] as number) * (t[j] as number);
      out[i] = s;
    }
    return out;
  }

  #update(solutions: Solution[]): void {
    const n = this.#n;
    const lambda = this.#lambda;
    solutions.sort((a, b) => a.value - b.value || a.number - b.number);
    this.#generation++;
    const limit = Math.sqrt(n) + (2 * n) / (n + 2);
    const ys = solutions.map((s) => {
      const y = Float64Array.from(s.x, (xi, i) => (xi - (this.#mean[i] as number)) / this.#sigma);
      if (s.injected) {
        const norm = Math.hypot(...this.#whiten(y));
        if (norm > limit) for (let i = 0; i < n; i++) y[i] = ((y[i] as number) * limit) / norm;
      }
      return y;
    });

    const yw = new Float64Array(n);
    for (let k = 0; k < this.#mu; k++) {
      const w = this.#weights[k] as number;
      const y = ys[k] as Float64Array;
      for (let i = 0; i < n; i++) yw[i] = (yw[i] as number) + w * (y[i] as number);
    }
    for (let i = 0; i < n; i++)
      this.#mean[i] = (this.#mean[i] as number) + this.#sigma * (yw[i] as number);

    // Step size: cumulative step-size adaptation.
    const cs = this.#cSigma;
    const whitenedYw = this.#whiten(yw);
    const ks = Math.sqrt(cs * (2 - cs) * this.#muEff);
    for (let i = 0; i < n; i++) {
      this.#pSigma[i] = (1 - cs) * (this.#pSigma[i] as number) + ks * (whitenedYw[i] as number);
    }
    const normPSigma = Math.hypot(...this.#pSigma);
    this.#sigma *= Math.exp((cs / this.#dSigma) * (normPSigma / this.#chiN - 1));
    this.#sigma = Math.min(this.#sigma, SIGMA_MAX);

    // Covariance: rank-one (evolution path) and rank-mu updates with active negative weights.
    const hLeft = normPSigma / Math.sqrt(1 - (1 - cs) ** (2 * (this.#generation + 1)));
    const hSigma = hLeft < (1.4 + 2 / (n + 1)) * this.#chiN ? 1 : 0;
    const cc = this.#cc;
    const kc = hSigma * Math.sqrt(cc * (2 - cc) * this.#muEff);
    for (let i = 0; i < n; i++)
      this.#pc[i] = (1 - cc) * (this.#pc[i] as number) + kc * (yw[i] as number);
    const deltaH = (1 - hSigma) * cc * (2 - cc);
    const c1 = this.#c1;
    const cmu = this.#cmu;
    const wio = ys.map((y, k) => {
      const w = this.#weights[k] as number;
      if (w >= 0) return w;
      const wy = this.#whiten(y);
      let sq = 0;
      for (let i = 0; i < n; i++) sq += (wy[i] as number) ** 2;
      return (w * n) / (sq + EPS);
    });
    const decay = 1 + c1 * deltaH - c1 - cmu * this.#weightSum;
    const cov = this.#cov;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        let rankMu = 0;
        for (let k = 0; k < lambda; k++) {
          const y = ys[k] as Float64Array;
          rankMu += (wio[k] as number) * (y[i] as number) * (y[j] as number);
        }
        const v =
          decay * (cov[i * n + j] as number) +
          c1 * (this.#pc[i] as number) * (this.#pc[j] as number) +
          cmu * rankMu;
        cov[i * n + j] = v;
        cov[j * n + i] = v;
      }
    }
    this.#decompose();
  }

  /** Refreshes the eigen decomposition, flooring negative eigenvalues (rounding) at EPS. */
  #decompose(): void {
    const n = this.#n;
    const { values, vectors } = symmetricEigen(this.#cov, n);
    const scales = Float64Array.from(values, (v) => Math.sqrt(v < 0 ? EPS : v));
    const cov = new Float64Array(n * n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) {
          s +=
            (vectors[i * n + k] as number) *
            (scales[k] as number) ** 2 *
            (vectors[j * n + k] as number);
        }
        cov[i * n + j] = s;
      }
    }
    this.#cov = cov;
    this.#basis = vectors;
    this.#scales = scales;
  }
}

function identity(n: number): Float64Array {
  const m = new Float64Array(n * n);
  for (let i = 0; i < n; i++) m[i * n + i] = 1;
  return m;
}

function sameParams(a: Params, b: Params): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}

/**
 * Eigenvalues and eigenvectors (columns of `vectors`, row-major n×n) of a symmetric matrix by
 * cyclic Jacobi rotations; plenty fast for the few dozen dimensions CMA-ES is used with here.
 */
function symmetricEigen(
  matrix: Float64Array,
  n: number,
): { values: Float64Array; vectors: Float64Array } {
  const a = new Float64Array(n * n);
  // Symmetrize first: rounding in the update can leave the two triangles a hair apart.
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      a[i * n + j] = ((matrix[i * n + j] as number) + (matrix[j * n + i] as number)) / 2;
    }
  }
  const v = identity(n);
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    let total = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const x = (a[i * n + j] as number) ** 2;
        total += x;
        if (i !== j) off += x;
      }
    }
    if (off <= 1e-30 * total || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q] as number;
        if (apq === 0) continue;
        const app = a[p * n + p] as number;
        const aqq = a[q * n + q] as number;
        const theta = (aqq - app) / (2 * apq);
        const t = (theta >= 0 ? 1 : -1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        // A ← Jᵀ A J with J the rotation by (c, s) in the (p, q) plane; V ← V J.
        for (let k = 0; k < n; k++) {
          const akp = a[k * n + p] as number;
          const akq = a[k * n + q] as number;
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p * n + k] as number;
          const aqk = a[q * n + k] as number;
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p] as number;
          const vkq = v[k * n + q] as number;
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = a[i * n + i] as number;
  return { values, vectors: v };
}
