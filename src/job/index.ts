/** Batch jobs: a dataset of items, one task each, results in a table exactly once. */
export * from './submit.js';
export * from './status.js';
export * from './export.js';
export * from './retry.js';
export * from './input.js';
export * from './template.js';
export * from './cancel.js';
