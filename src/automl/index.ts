/** Search spaces, samplers and pruners: pure, seeded logic with no I/O. */
export * from './contract.js';
export * from './rng.js';
export * from './space.js';
export {
  RandomSampler,
  sampleParam,
  sampleParams,
  type RandomSamplerOptions,
} from './samplers/random.js';
export { GridSampler, MAX_GRID_SIZE, type GridSamplerOptions } from './samplers/grid.js';
export { TpeSampler, type TpeSamplerOptions } from './samplers/tpe.js';
export { CmaEsSampler, type CmaEsSamplerOptions } from './samplers/cmaes.js';
export { MedianPruner, type MedianPrunerOptions } from './pruners/median.js';
export { SuccessiveHalvingPruner, type SuccessiveHalvingPrunerOptions } from './pruners/asha.js';
export { HyperbandPruner, type HyperbandPrunerOptions } from './pruners/hyperband.js';
export { NopPruner } from './pruners/none.js';
