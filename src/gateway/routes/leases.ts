/**
 * Pull-consume for workers that cannot reach the broker: `POST /v1/queues/:queue/leases`
 * (long-poll for deliveries), `DELETE /v1/queues/:queue/consumers/:consumer`, and settling a
 * lease: `POST /v1/leases/ack` (many at once), `POST /v1/leases/:leaseId/{ack,nack,release,
 * dead-letter,extend}`. Only the token that took a lease (or an admin) may settle it. The
 * deliveries and their leases live in the context's PullHub (src/gateway/pull.ts).
 */
import type { FastifyRequest } from 'fastify';
import {
  ackManyRequestSchema,
  ackRequestSchema,
  consumerNameSchema,
  deadLetterRequestSchema,
  extendRequestSchema,
  leaseRequestSchema,
  nackRequestSchema,
  type WireLease,
} from '../../protocol/gateway-wire.js';
import { Role } from '../auth.js';
import type { GatewayContext, GatewayRoutes } from '../context.js';
import { GatewayErrorCode, HttpError } from '../errors.js';
import type { LeaseEntry } from '../pull.js';
import { nameParam, queueParam, readJson, stripUndefined, toOutgoing } from '../request.js';

const WORKER = { config: { roles: [Role.Worker] } } as const;

export const leaseRoutes: GatewayRoutes = async (api, { ctx }) => {
  const { hub } = ctx;

  api.post<{ Params: { queue: string } }>('/v1/queues/:queue/leases', WORKER, async (req, res) => {
    const queue = queueParam(req.params.queue);
    const ask = readJson(req, leaseRequestSchema, `queue "${queue}" lease request`);
    ctx.admission.brokerUp();
    const entries = await hub.lease(
      queue,
      {
        max: ask.max,
        waitMs: ask.waitMs,
        ...(ask.leaseMs !== undefined && { leaseMs: ask.leaseMs }),
        ...(ask.consumer !== undefined && { consumer: ask.consumer }),
      },
      ctx.principal(req).name,
      (cb) =>
        res.raw.once('close', () => {
          if (!res.raw.writableFinished) cb();
        }),
    );
    if (entries.length > 0) {
      res.raw.once('close', () => {
        if (!res.raw.writableFinished) hub.releaseUndelivered(entries);
      });
    }
    return { leases: entries.map(toWireLease) };
  });

  api.delete<{ Params: { queue: string; consumer: string } }>(
    '/v1/queues/:queue/consumers/:consumer',
    WORKER,
    async (req, reply) => {
      const queue = queueParam(req.params.queue);
      const consumer = nameParam(req.params.consumer, consumerNameSchema, 'consumer');
      const p = ctx.principal(req);
      hub.cancelClient(queue, consumer, p.name, p.role === Role.Admin);
      return reply.code(204).send();
    },
  );

  const ownLease = (req: FastifyRequest<{ Params: { leaseId: string } }>): string => {
    const entry = hub.get(req.params.leaseId);
    checkOwner(ctx, entry, req);
    return entry.id;
  };

  api.post('/v1/leases/ack', WORKER, async (req) => {
    const body = readJson(req, ackManyRequestSchema, 'ack');
    // Every listed lease must be the caller's before any is acked.
    for (const id of body.leaseIds) {
      const entry = hub.find(id);
      if (entry) checkOwner(ctx, entry, req);
    }
    const gone = await hub.ackMany(body.leaseIds);
    return { acked: body.leaseIds.length - gone.length, gone };
  });

  api.post<{ Params: { leaseId: string } }>(
    '/v1/leases/:leaseId/ack',
    WORKER,
    async (req, reply) => {
      const body = readJson(req, ackRequestSchema, 'ack');
      const id = ownLease(req);
      if (body.publish) {
        const target = body.publish.queue;
        const messages = body.publish.messages.map(toOutgoing);
        const done = ctx.admission.admit(messages.length, false);
        try {
          await hub.ack(id, { queue: target, messages });
        } finally {
          done();
        }
      } else {
        await hub.ack(id);
      }
      return reply.code(204).send();
    },
  );

  api.post<{ Params: { leaseId: string } }>(
    '/v1/leases/:leaseId/nack',
    WORKER,
    async (req, reply) => {
      const body = readJson(req, nackRequestSchema, 'nack');
      await hub.nack(ownLease(req), stripUndefined(body));
      return reply.code(204).send();
    },
  );

  api.post<{ Params: { leaseId: string } }>(
    '/v1/leases/:leaseId/release',
    WORKER,
    async (req, reply) => {
      await hub.release(ownLease(req));
      return reply.code(204).send();
    },
  );

  api.post<{ Params: { leaseId: string } }>(
    '/v1/leases/:leaseId/dead-letter',
    WORKER,
    async (req, reply) => {
      const body = readJson(req, deadLetterRequestSchema, 'dead-letter');
      await hub.deadLetter(ownLease(req), body.reason);
      return reply.code(204).send();
    },
  );

  api.post<{ Params: { leaseId: string } }>('/v1/leases/:leaseId/extend', WORKER, async (req) => {
    const body = readJson(req, extendRequestSchema, 'extend');
    return { leaseExpiresAt: await hub.extend(ownLease(req), body.ms) };
  });
};

/** Refuses (403) a lease taken under another token than the caller's, unless admin. */
function checkOwner(ctx: GatewayContext, entry: LeaseEntry, req: FastifyRequest): void {
  const p = ctx.principal(req);
  if (p.role !== Role.Admin && entry.principal !== p.name) {
    throw new HttpError(
      403,
      GatewayErrorCode.Forbidden,
      `lease "${entry.id}" belongs to another token than "${p.name}"`,
    );
  }
}

function toWireLease(e: LeaseEntry): WireLease {
  const d = e.delivery;
  return {
    leaseId: e.id,
    messageId: d.id,
    body: d.body.toString('utf8'),
    headers: d.headers,
    priority: d.priority,
    deliveryCount: d.deliveryCount,
    leaseExpiresAt: e.expiresAt,
  };
}
