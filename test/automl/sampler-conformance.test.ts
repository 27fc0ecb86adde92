/**
 * Runs the sampler conformance suite against every sampler the scheduler can build: the names
 * come from the spec's list and the instances from the scheduler's own factory, so a sampler
 * added there is checked here without a change to this file.
 */
import { describe, expect, it } from 'vitest';
import * as automl from '../../src/automl/index.js';
import { SearchSpace } from '../../src/automl/space.js';
import { createSampler } from '../../src/scheduler/search.js';
import { SAMPLERS, parseExperimentSpec } from '../../src/scheduler/spec.js';
import { CONFORMANCE_SPACES, samplerConformanceSuite } from './conformance/sampler-suite.js';

type SamplerName = (typeof SAMPLERS)[number];

/** Options that make a sampler leave its random start within the suite's short histories. */
const OPTIONS: Partial<Record<SamplerName, Record<string, unknown>>> = {
  tpe: { startupTrials: 4, candidates: 8 },
  cmaes: { popsize: 3 },
};

function create(name: SamplerName, space: SearchSpace, seed: number): automl.Sampler {
  const spec = parseExperimentSpec({
    name: 'conformance',
    space: space.toJSON(),
    sampler: { name, seed, options: OPTIONS[name] ?? {} },
    maxTrials: 1,
  });
  return createSampler(space, spec);
}

describe('the samplers the scheduler builds', () => {
  it('are at least one, and include every sampler class automl exports', () => {
    expect(SAMPLERS.length).toBeGreaterThan(0);
    const space = SearchSpace.parse(CONFORMANCE_SPACES['uniform, log and stepped floats']);
    const built = new Set<unknown>(SAMPLERS.map((name) => create(name, space, 0).constructor));
    const exported = Object.entries(automl as Record<string, unknown>).filter(
      ([key, value]) => key.endsWith('Sampler') && typeof value === 'function',
    );
    expect(exported.length).toBeGreaterThan(0);
    for (const [key, value] of exported) expect(built.has(value), key).toBe(true);
  });
});

for (const name of SAMPLERS) {
  samplerConformanceSuite({ name, create: (space, seed) => create(name, space, seed) });
}
