export type { TaskContext, TaskHandler } from './types.js';
export { execHandler, parseCommandOutput } from './exec.js';
export type { ExecHandlerOptions } from './exec.js';
export { httpPoolHandler, HttpEndpointPool } from './http-pool.js';
export type { HttpPoolOptions, EndpointState } from './http-pool.js';
export { loadModuleHandler } from './module.js';
export { mapPayload } from './map-payload.js';
