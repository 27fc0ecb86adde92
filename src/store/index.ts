/** The Store contract (experiments, batch jobs, result tables) and its implementations. */
export * from './contract.js';
export * from './open.js';
export * from './experiments.js';
export * from './jobs.js';
export * from './results.js';
export { SqliteStore, type SqliteStoreOptions } from './sqlite/index.js';
