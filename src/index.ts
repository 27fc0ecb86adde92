/**
 * qtune's public API. Sub-paths (`qtune/protocol`, `qtune/broker`, `qtune/patterns`,
 * `qtune/worker`, `qtune/automl`, `qtune/scheduler`, `qtune/store`, `qtune/sink`, `qtune/job`,
 * `qtune/experiment`, `qtune/gateway`) expose each layer on its own.
 */
export * from './protocol/index.js';
export * from './broker/index.js';
export * from './patterns/index.js';
export * from './worker/index.js';
export * from './automl/index.js';
export * from './store/index.js';
export * from './sink/index.js';
export * from './job/index.js';
export * from './experiment/index.js';
export * from './gateway/index.js';
export * from './scheduler/index.js';
