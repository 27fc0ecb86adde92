/**
 * Management routes of the gateway: purge, pause and resume a queue, cancel a job. Each needs
 * an `admin` token (jobs record no owner, so a producer cannot be told apart from another);
 * an unknown queue or job answers 404 with the closest existing name. Deleting a queue is
 * `DELETE /v1/queues/:queue`, next to its declaration.
 */

import type { FastifyPluginAsync } from 'fastify';
import type { Broker } from '../broker/contract.js';
import { queueNameSchema } from '../protocol/gateway-wire.js';
import { cancelJobTasks } from '../job/cancel.js';
import { requireQueue } from '../patterns/require-queue.js';
import { NotFoundError } from '../protocol/errors.js';
import { Role } from './auth.js';
import { GatewayErrorCode, HttpError } from './errors.js';
import type { GatewayStatusProviders } from './gateway.js';

export interface ManageOptions {
  broker: Broker;
  /** Where `POST /v1/jobs/:name/cancel` finds a job (its status gives the job's queue). */
  status?: GatewayStatusProviders;
}

const ADMIN = { config: { roles: [Role.Admin] } } as const;

function queueParam(raw: string): string {
  const parsed = queueNameSchema.safeParse(raw);
  if (!parsed.success) {
    throw new HttpError(
      400,
      GatewayErrorCode.BadInput,
      `queue name ${JSON.stringify(raw)}: ${parsed.error.issues[0]?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

/** Runs `fn`, answering 404 for a NotFoundError (its message names the closest name). */
async function found<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof NotFoundError) {
      throw new HttpError(404, GatewayErrorCode.NotFound, err.message, { cause: err });
    }
    throw err;
  }
}

/** The fastify plugin; register it on the gateway app after its auth hooks. */
export const manageRoutes: FastifyPluginAsync<ManageOptions> = async (api, { broker, status }) => {
  api.post<{ Params: { queue: string } }>('/v1/queues/:queue/purge', ADMIN, async (req) => {
    const queue = queueParam(req.params.queue);
    return found(async () => {
      await requireQueue(broker, queue);
      return { queue, purged: await broker.purgeQueue(queue) };
    });
  });

  for (const [verb, paused] of [
    ['pause', true],
    ['resume', false],
  ] as const) {
    api.post<{ Params: { queue: string } }>(`/v1/queues/:queue/${verb}`, ADMIN, async (req) => {
      const queue = queueParam(req.params.queue);
      return found(async () => {
        await requireQueue(broker, queue);
        await (paused ? broker.pauseQueue(queue) : broker.resumeQueue(queue));
        return { queue, paused };
      });
    });
  }

  api.post<{ Params: { name: string } }>('/v1/jobs/:name/cancel', ADMIN, async (req) => {
    const name = req.params.name;
    const job = (await status?.job?.(name)) as { queue?: unknown } | undefined;
    if (job === undefined || typeof job.queue !== 'string') {
      throw new HttpError(404, GatewayErrorCode.NotFound, `job "${name}" does not exist`);
    }
    return cancelJobTasks(broker, { name, queue: job.queue });
  });
};
