/** The experiment scheduler, its spec, and the sampler/pruner factory. */
export * from './scheduler.js';
export * from './spec.js';
export { createPruner, createSampler } from './search.js';
export {
  assertDeletable,
  closestName,
  deleteExperiment,
  experimentQueueNames,
  findExperiment,
  type DeletedExperiment,
  type DeleteExperimentOptions,
} from './manage.js';
