/** The experiment scheduler, its spec, and the sampler/pruner factory. */
export * from './scheduler.js';
export * from './spec.js';
export * from './stored.js';
export { createPruner, createSampler } from './search.js';
