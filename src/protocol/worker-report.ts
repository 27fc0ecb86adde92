/**
 * What a worker says about itself when `qtune status` asks (on the control topic) or when it
 * pushes its report to a gateway (`PUT /v1/workers/:id`). Rates are tasks per second.
 */
import type { WorkerInfo } from './result.js';

/** A worker's status report. */
export interface WorkerReport {
  worker: WorkerInfo;
  queue: string;
  startedAt: number;
  done: number;
  failed: number;
  deadLettered: number;
  inFlight: number;
  /** Tasks finished per second since start. */
  rate: number;
  /** An `--http` worker's endpoints and their circuit breakers (absent for other handlers). */
  endpoints?: EndpointReport[];
}

/** One endpoint of an HTTP pool as a worker reports it (URL password hidden). */
export interface EndpointReport {
  url: string;
  /** `up`, `open` (cooling down: no requests) or `half-open` (one probe request at a time). */
  state: 'up' | 'open' | 'half-open';
  outstanding: number;
  succeeded: number;
  failed: number;
  consecutiveFailures: number;
  recentFailures: number;
  recentRequests: number;
  /** Times the endpoint's breaker has opened. */
  opened: number;
  /** While open: ms until a probe request may go through. */
  retryInMs?: number;
  /** Why the breaker last opened. */
  reason?: string;
}
