/** Builds the sampler and pruner an experiment spec names. */
import type { Pruner, Sampler } from '../automl/contract.js';
import { HyperbandPruner } from '../automl/pruners/hyperband.js';
import { MedianPruner } from '../automl/pruners/median.js';
import { NopPruner } from '../automl/pruners/none.js';
import { SuccessiveHalvingPruner } from '../automl/pruners/asha.js';
import { CmaEsSampler } from '../automl/samplers/cmaes.js';
import { GridSampler } from '../automl/samplers/grid.js';
import { RandomSampler } from '../automl/samplers/random.js';
import { TpeSampler } from '../automl/samplers/tpe.js';
import type { SearchSpace } from '../automl/space.js';
import { InputError } from '../protocol/errors.js';
import type { ExperimentSpec } from './spec.js';

/** Option names each sampler and pruner accepts; anything else in a spec is a typo to report. */
const KNOWN_OPTIONS: Record<string, readonly string[]> = {
  'sampler random': [],
  'sampler grid': ['shuffle', 'points', 'values'],
  'sampler tpe': [
    'startupTrials',
    'candidates',
    'gamma',
    'priorWeight',
    'multivariate',
    'constantLiar',
  ],
  'sampler cmaes': ['sigma0', 'popsize', 'startupTrials'],
  'pruner none': [],
  'pruner median': ['startupTrials', 'warmupSteps', 'intervalSteps', 'minTrialsAtStep'],
  'pruner asha': ['minResource', 'reductionFactor', 'minEarlyStoppingRate', 'maxResource'],
  'pruner hyperband': ['minResource', 'maxResource', 'reductionFactor', 'seed'],
};

function checkOptions(what: string, options: Record<string, unknown>): void {
  const known = KNOWN_OPTIONS[what] ?? [];
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw new InputError(
        `${what}: unknown option "${key}" (${known.length > 0 ? `known: ${known.join(', ')}` : 'it takes none'})`,
      );
    }
  }
}

/** The spec's sampler; throws `InputError` on an option it does not know or a bad value. */
export function createSampler(space: SearchSpace, spec: ExperimentSpec): Sampler {
  checkOptions(`sampler ${spec.sampler.name}`, spec.sampler.options);
  const options = { ...spec.sampler.options, seed: spec.sampler.seed ?? 0 };
  switch (spec.sampler.name) {
    case 'random':
      return new RandomSampler(space, options);
    case 'grid':
      return new GridSampler(space, options);
    case 'tpe':
      return new TpeSampler(space, options);
    case 'cmaes':
      return new CmaEsSampler(space, options);
  }
}

/** The spec's pruner; ASHA and Hyperband take `maxResource` from `budget.maxSteps` unless their options set it. */
export function createPruner(spec: ExperimentSpec): Pruner {
  checkOptions(`pruner ${spec.pruner.name}`, spec.pruner.options);
  const options: Record<string, unknown> = { ...spec.pruner.options };
  const withMax = (): Record<string, unknown> =>
    spec.budget?.maxSteps !== undefined && options.maxResource === undefined
      ? { ...options, maxResource: spec.budget.maxSteps }
      : options;
  switch (spec.pruner.name) {
    case 'none':
      return new NopPruner();
    case 'median':
      return new MedianPruner(options);
    case 'asha':
      return new SuccessiveHalvingPruner(withMax());
    case 'hyperband':
      return new HyperbandPruner(withMax());
  }
}
