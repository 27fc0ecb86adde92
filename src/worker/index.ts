export { startWorker, Worker, backoffDelay, installSignalHandlers } from './runtime.js';
export type {
  WorkerOptions,
  WorkerEvents,
  WorkerStats,
  TaskEvent,
  TaskObserver,
  TaskOutcome,
  StopOptions,
  BackoffOptions,
  SignalHandlerOptions,
} from './runtime.js';
export {
  getHostInfo,
  probeGpus,
  parseNvidiaSmi,
  newWorkerId,
  NVIDIA_SMI_ARGS,
  NVIDIA_SMI_LIST_ARGS,
  parseGpuList,
  resolveGpuSlots,
} from './host-info.js';
export type { HostInfoOptions } from './host-info.js';
export { silentLogger } from './logger.js';
export type { Logger } from './logger.js';
export * from './handlers/index.js';
export {
  trialHandler,
  type Trial,
  type TrialHandlerOptions,
  type TrialMetrics,
  type TrialRun,
} from './trial/trial-handler.js';
export {
  execTrialRun,
  fillCommand,
  httpTrialRun,
  moduleTrialRun,
  REPORT_PREFIX,
  RESULT_PREFIX,
} from './trial/runners.js';
