/**
 * Runs the pruner conformance suite against every pruner the scheduler can build: the names come
 * from the spec's list and the instances from the scheduler's own factory, so a pruner added
 * there is checked here without a change to this file.
 */
import { describe, expect, it } from 'vitest';
import * as automl from '../../src/automl/index.js';
import { createPruner } from '../../src/scheduler/search.js';
import { PRUNERS, parseExperimentSpec } from '../../src/scheduler/spec.js';
import { prunerConformanceSuite } from './conformance/pruner-suite.js';

type PrunerName = (typeof PRUNERS)[number];

const MAX_STEPS = 9;

/** Options that let a pruner decide within the suite's short histories. */
const OPTIONS: Partial<Record<PrunerName, Record<string, unknown>>> = {
  median: { startupTrials: 2 },
};

function create(name: PrunerName): automl.Pruner {
  const spec = parseExperimentSpec({
    name: 'conformance',
    space: { x: { type: 'float', low: 0, high: 1 } },
    pruner: { name, options: OPTIONS[name] ?? {} },
    budget: { maxSteps: MAX_STEPS },
    maxTrials: 1,
  });
  return createPruner(spec);
}

describe('the pruners the scheduler builds', () => {
  it('are at least one, and include every pruner class automl exports', () => {
    expect(PRUNERS.length).toBeGreaterThan(0);
    const built = new Set<unknown>(PRUNERS.map((name) => create(name).constructor));
    const exported = Object.entries(automl as Record<string, unknown>).filter(
      ([key, value]) => key.endsWith('Pruner') && typeof value === 'function',
    );
    expect(exported.length).toBeGreaterThan(0);
    for (const [key, value] of exported) expect(built.has(value), key).toBe(true);
  });
});

for (const name of PRUNERS) {
  prunerConformanceSuite({ name, create: () => create(name), maxSteps: MAX_STEPS });
}
