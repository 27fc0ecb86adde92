export type { TaskContext, TaskHandler } from './types.js';
export { execHandler, parseCommandOutput } from './exec.js';
export type { ExecHandlerOptions } from './exec.js';
export { httpPoolHandler, HttpEndpointPool, checkEndpointUrl } from './http-pool.js';
export type { HttpPoolOptions, EndpointState } from './http-pool.js';
export { loadModuleHandler } from './module.js';
export { mapPayload } from './map-payload.js';
export { CircuitBreaker, BreakerState, BREAKER_DEFAULTS } from './circuit-breaker.js';
export type {
  BreakerOptions,
  BreakerPermit,
  BreakerSnapshot,
  BreakerTransition,
} from './circuit-breaker.js';
