/**
 * Random search: each parameter drawn independently and uniformly in its internal
 * coordinate (log scale where asked). Trial `n` draws from its own stream of the seed, so
 * a resumed experiment proposes exactly what the uninterrupted one would have.
 */
import type { FinishedTrial, PendingTrial, Sampler } from '../contract.js';
import { Rng } from '../rng.js';
import { SearchSpace, type ParamDef, type ParamValue, type Params } from '../space.js';

/** One value of `def`, uniform in its internal coordinate. */
export function sampleParam(def: ParamDef, rng: Rng): ParamValue {
  if (def.type === 'categorical') return rng.pick(def.choices);
  const [lo, hi] = SearchSpace.internalBounds(def);
  return SearchSpace.fromInternal(def, rng.uniform(lo, hi));
}

/** A full assignment: every parameter active under the values drawn before it. */
export function sampleParams(space: SearchSpace, rng: Rng): Params {
  const params: Params = {};
  for (const def of space.params) {
    if (space.isActive(def, params)) params[def.name] = sampleParam(def, rng);
  }
  return params;
}

export interface RandomSamplerOptions {
  /** Seed of every draw (default: 0). */
  seed?: number;
}

export class RandomSampler implements Sampler {
  readonly #space: SearchSpace;
  readonly #seed: number;

  constructor(space: SearchSpace, options: RandomSamplerOptions = {}) {
    this.#space = space;
    this.#seed = options.seed ?? 0;
  }

  suggest(number: number, _running: readonly PendingTrial[]): Params {
    return sampleParams(this.#space, new Rng(this.#seed, number));
  }

  tell(_trial: FinishedTrial): void {}
}
