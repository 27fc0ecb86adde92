/**
 * Queues: declare (`PUT /v1/queues/:queue`), delete (`DELETE`), statistics (`GET /v1/queues`,
 * `GET /v1/queues/:queue`), and the admin's purge, pause and resume
 * (`POST /v1/queues/:queue/{purge,pause,resume}`; an unknown queue answers 404 with the
 * closest existing name). A producer or worker may delete only the temporary queues its own
 * token declared.
 */
import type { QueueStats } from '../../broker/contract.js';
import { requireQueue } from '../../patterns/require-queue.js';
import { queueNameSchema, queueOptionsSchema } from '../../protocol/gateway-wire.js';
import { ANY_ROLE } from '../access.js';
import { Role } from '../auth.js';
import type { GatewayRoutes } from '../context.js';
import { GatewayErrorCode, HttpError } from '../errors.js';
import { queueParam, readJson, stripUndefined } from '../request.js';

const ADMIN = { config: { roles: [Role.Admin] } } as const;

export const queueRoutes: GatewayRoutes = async (api, { ctx }) => {
  const { broker, hub, admission, queues } = ctx;

  api.put<{ Params: { queue: string } }>(
    '/v1/queues/:queue',
    { config: { roles: [Role.Worker, Role.Producer] } },
    async (req, reply) => {
      const queue = queueParam(req.params.queue);
      const opts = readJson(req, queueOptionsSchema, `queue "${queue}" options`);
      const p = ctx.principal(req);
      const owner = queues.ownerOf(queue);
      if (opts.temporary === true && owner !== undefined && owner !== p.name) {
        throw new HttpError(
          409,
          GatewayErrorCode.QueueMismatch,
          `queue "${queue}" is a temporary queue of another token; declared as temporary by token "${p.name}"`,
        );
      }
      admission.brokerUp();
      await broker.declareQueue(queue, stripUndefined(opts));
      queues.declared(queue, opts.temporary === true && owner === undefined ? p.name : undefined);
      return reply.code(204).send();
    },
  );

  api.delete<{ Params: { queue: string } }>(
    '/v1/queues/:queue',
    { config: { roles: [Role.Worker, Role.Producer] } },
    async (req, reply) => {
      const queue = queueParam(req.params.queue);
      const p = ctx.principal(req);
      if (p.role !== Role.Admin && queues.ownerOf(queue) !== p.name) {
        throw new HttpError(
          403,
          GatewayErrorCode.Forbidden,
          `token "${p.name}" has role ${p.role}; only admin may delete queue "${queue}" (others may delete the temporary queues they declared)`,
        );
      }
      admission.brokerUp();
      await broker.deleteQueue(queue);
      queues.deleted(queue);
      return reply.code(204).send();
    },
  );

  api.get<{ Querystring: { stats?: string } }>(
    '/v1/queues',
    { config: { roles: ANY_ROLE } },
    async (req) => {
      admission.brokerUp();
      const names = await broker.listQueues();
      if (req.query.stats === 'false') return { queues: names.map((queue) => ({ queue })) };
      const stats = await Promise.all(
        names.map((n) =>
          broker.stats(n).then(
            (s) => hub.adjustStats(s),
            () => undefined,
          ),
        ),
      );
      return { queues: stats.filter((s): s is QueueStats => s !== undefined) };
    },
  );

  api.get<{ Params: { queue: string } }>(
    '/v1/queues/:queue',
    { config: { roles: ANY_ROLE } },
    async (req) => {
      const queue = queueParam(req.params.queue);
      admission.brokerUp();
      return hub.adjustStats(await broker.stats(queue));
    },
  );

  // --- management (admin) -------------------------------------------------------------------

  api.post<{ Params: { queue: string } }>('/v1/queues/:queue/purge', ADMIN, async (req) => {
    const queue = managedQueue(req.params.queue);
    await requireQueue(broker, queue);
    // Deliveries the gateway holds for its pulling workers count as ready to a client: gone too.
    const parked = await ctx.hub.purgeParked(queue);
    return { queue, purged: parked + (await broker.purgeQueue(queue)) };
  });

  for (const [verb, paused] of [
    ['pause', true],
    ['resume', false],
  ] as const) {
    api.post<{ Params: { queue: string } }>(`/v1/queues/:queue/${verb}`, ADMIN, async (req) => {
      const queue = managedQueue(req.params.queue);
      await requireQueue(broker, queue);
      await (paused ? broker.pauseQueue(queue) : broker.resumeQueue(queue));
      return { queue, paused };
    });
  }
};

/** The queue of a management route; 400 naming the name as given. */
function managedQueue(raw: string): string {
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
