/** The experiment scheduler, its spec, and the sampler/pruner factory. */
export * from './scheduler.js';
export * from './spec.js';
export { createPruner, createSampler } from './search.js';
export { closestName, findExperiment } from './manage.js';
