export {
  resultQueueOf,
  submitTasks,
  createTaskEnvelope,
  createResultEnvelope,
  resultMessage,
  publishResult,
  decodeResult,
  consumeResults,
  deadReason,
  taskResultSchema,
} from './work-queue.js';
export type { TaskItem, SubmitOptions, ConsumeResultsOptions } from './work-queue.js';
export { Requester, RemoteError, serveRequests, REPLY_ERROR_HEADER } from './request-reply.js';
export type {
  RequesterOptions,
  RequestOptions,
  RequestHandler,
  ServeOptions,
} from './request-reply.js';
export { publishEvent, subscribeEvents, TOPIC_HEADER } from './pubsub.js';
export type { PublishEventOptions, SubscribeEventsOptions, EventHandler } from './pubsub.js';
export {
  ventilate,
  collectBatch,
  runPipeline,
  batchResultQueueOf,
  BATCH_HEADER,
  BATCH_TOTAL_HEADER,
} from './pipeline.js';
export type {
  VentilateOptions,
  Ventilated,
  BatchSummary,
  CollectOptions,
  RunPipelineOptions,
} from './pipeline.js';
