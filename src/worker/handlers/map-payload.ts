import type { TaskContext, TaskHandler } from './types.js';

/**
 * Wraps `handler` so that it receives `map(payload, ctx)` instead of the task's payload, for
 * example a template filled from the payload's fields. A throw from `map` fails the attempt
 * like a throw from the handler: a TaskError with `retry: false` dead-letters the task at once.
 */
export function mapPayload(
  handler: TaskHandler,
  map: (payload: unknown, ctx: TaskContext) => unknown,
): TaskHandler {
  return async (payload: unknown, ctx: TaskContext) => handler(await map(payload, ctx), ctx);
}
