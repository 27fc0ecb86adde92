export * from './errors.js';
export * from './envelope.js';
export * from './codec.js';
export type * from './result.js';
export * from './trial.js';
export * from './duration.js';
export * from './key.js';
export * from './names.js';
export * from './redact.js';
