/**
 * qtune's public API. Sub-paths (`qtune/protocol`, `qtune/broker`, `qtune/patterns`,
 * `qtune/worker`) expose each layer on its own.
 */
export * from './protocol/index.js';
export * from './broker/index.js';
export * from './patterns/index.js';
export * from './worker/index.js';
