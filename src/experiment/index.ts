/**
 * AutoML experiments as the CLI and the gateway both see them: status, best trial, trials,
 * export, stop and delete, as functions over the store (and the broker, to delete) that
 * return plain data. Running one is the scheduler's (src/scheduler/).
 */
export * from './status.js';
export * from './best.js';
export * from './trials.js';
export * from './export.js';
export * from './stop.js';
export * from './delete.js';
export * from './resume.js';
export * from './timeline.js';
export * from './landscape.js';
