/**
 * The JSON bodies of qtune's HTTP gateway API (`/v1`), shared by the gateway server and the
 * {@link GatewayBroker} client so that both sides validate the same shapes.
 */
import { z } from 'zod';
import { MAX_NAME_BYTES, nameProblem, printable, type NameRules } from './names.js';

/** Longest long-poll a lease request may ask for, in ms. */
export const MAX_WAIT_MS = 30_000;
/** Most leases one lease request may ask for. */
export const MAX_LEASES_PER_REQUEST = 1_000;

const headerValue = z.union([z.string(), z.number(), z.boolean(), z.null()]);
/** Message headers on the wire: string keys, scalar values. */
export const headersSchema = z.record(z.string(), headerValue);

/** A name checked by the protocol's one name rule (see src/protocol/names.ts). */
function nameSchema(kind: string, rules?: NameRules) {
  return z.string().superRefine((name, ctx) => {
    const problem = nameProblem(kind, name, rules);
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  });
}

/** Queue name in a path or body: at most 200 bytes, no control character, wildcard or `amq.`. */
export const queueNameSchema = nameSchema('queue');

/** Where a reply goes: a queue name, or an AMQP reply address (`amq.rabbitmq.reply-to...`). */
export const replyToSchema = nameSchema('replyTo', { allowAmq: true });

/** A job's name: at most 128 bytes, as every name derived from it must fit. */
export const jobNameSchema = nameSchema('job', { maxBytes: MAX_NAME_BYTES });

/** Answer of `POST /v1/jobs/:name/items`. */
export const jobItemsResponseSchema = z.object({
  job: z.string(),
  items: z.number().int().nonnegative(),
  added: z.number().int().nonnegative(),
  published: z.number().int().nonnegative(),
});

/** `PUT /v1/workers/:id`: a worker's status report (src/worker/control.ts WorkerReport). */
export const workerReportSchema = z.looseObject({
  worker: z.looseObject({
    id: z.string().min(1).max(256),
    host: z.string().max(1024),
    pid: z.number().int(),
  }),
  queue: z.string().max(1024),
  startedAt: z.number(),
  done: z.number(),
  failed: z.number(),
  deadLettered: z.number(),
  inFlight: z.number(),
  rate: z.number(),
});

/** A client consumer's name (lease requests and their cancel): any printable text. */
export const consumerNameSchema = z
  .string()
  .min(1)
  .max(256)
  .superRefine((name, ctx) => {
    if (printable(name) !== name) {
      ctx.addIssue({
        code: 'custom',
        message: `consumer name "${printable(name)}" contains a control character`,
      });
    }
  });

/** A message to publish; `body` is UTF-8 text (qtune bodies are JSON). */
export const wireMessageSchema = z.object({
  id: z.string().min(1).max(256).optional(),
  body: z.string(),
  headers: headersSchema.optional(),
  priority: z.number().int().min(0).max(255).optional(),
  delayMs: z.number().int().min(0).optional(),
});
export type WireMessage = z.infer<typeof wireMessageSchema>;

/** `POST /v1/queues/:queue/messages`. */
export const publishRequestSchema = z.object({
  messages: z.array(wireMessageSchema),
});
export type PublishRequest = z.infer<typeof publishRequestSchema>;

/** Answer of `POST /v1/queues/:queue/messages`: the ids, in order, once durable. */
export const publishResponseSchema = z.object({ ids: z.array(z.string()) });

/** Answer of `POST /v1/queues/:queue/tasks`. */
export const ingestResponseSchema = z.object({
  accepted: z.number().int().nonnegative(),
  ids: z.array(z.string()),
});
export type IngestResponse = z.infer<typeof ingestResponseSchema>;

/**
 * `PUT /v1/queues/:queue`: the Broker contract's QueueOptions, plus `type`, RabbitMQ's queue type
 * (AmqpQueueOptions), which the gateway hands to its broker and other brokers ignore.
 */
export const queueOptionsSchema = z.object({
  durable: z.boolean().optional(),
  maxDeliveries: z.number().int().positive().optional(),
  deadLetterQueue: queueNameSchema.optional(),
  priorities: z.number().int().min(1).max(255).optional(),
  leaseMs: z.number().int().positive().optional(),
  messageTtlMs: z.number().int().positive().optional(),
  temporary: z.boolean().optional(),
  type: z.enum(['quorum', 'classic']).optional(),
});

/** Statistics of one queue (`GET /v1/queues/:queue`). */
export const queueStatsSchema = z.object({
  queue: z.string(),
  ready: z.number(),
  delayed: z.number(),
  inFlight: z.number(),
  deadLettered: z.number(),
  consumers: z.number(),
  /** Absent from gateways older than queue pausing. */
  paused: z.boolean().default(false),
});

/** `GET /v1/queues`: stats of every queue, or names only with `?stats=false`. */
export const queueListSchema = z.object({
  queues: z.array(
    z.object({
      queue: z.string(),
      ready: z.number().optional(),
      delayed: z.number().optional(),
      inFlight: z.number().optional(),
      deadLettered: z.number().optional(),
      consumers: z.number().optional(),
      paused: z.boolean().optional(),
    }),
  ),
});

/** `POST /v1/queues/:queue/leases`: long-poll for up to `max` deliveries. */
export const leaseRequestSchema = z.object({
  max: z.number().int().min(1).max(MAX_LEASES_PER_REQUEST),
  waitMs: z.number().int().min(0).max(MAX_WAIT_MS).default(0),
  /** Lease granted to the client; default: what is left of the broker's lease. */
  leaseMs: z.number().int().min(100).max(86_400_000).optional(),
  /** The client consumer asking, counted in the queue's `consumers`; cancelled with DELETE. */
  consumer: consumerNameSchema.optional(),
});
export type LeaseRequest = z.input<typeof leaseRequestSchema>;

/** One leased delivery. */
export const leaseSchema = z.object({
  leaseId: z.string(),
  messageId: z.string(),
  body: z.string(),
  headers: headersSchema,
  priority: z.number(),
  deliveryCount: z.number(),
  leaseExpiresAt: z.number(),
});
export type WireLease = z.infer<typeof leaseSchema>;

/** Answer of a lease request; empty after `waitMs` without work. */
export const leaseResponseSchema = z.object({ leases: z.array(leaseSchema) });
export type LeaseResponse = z.infer<typeof leaseResponseSchema>;

/** `POST /v1/leases/:leaseId/ack`: optionally publish (then ack) in one step. */
export const ackRequestSchema = z.object({
  publish: z
    .object({
      queue: replyToSchema,
      messages: z.array(wireMessageSchema),
    })
    .optional(),
});

/** Most lease ids one `POST /v1/leases/ack` takes. */
export const MAX_ACK_LEASE_IDS = 10_000;

/** `POST /v1/leases/ack`: ack many leases in one request. */
export const ackManyRequestSchema = z.object({
  leaseIds: z.array(z.string().min(1).max(256)).min(1).max(MAX_ACK_LEASE_IDS),
});

/** Answer of `POST /v1/leases/ack`: how many were acked, and the ids that were gone (skipped). */
export const ackManyResponseSchema = z.object({
  acked: z.number().int().min(0),
  gone: z.array(z.string()),
});

/** `POST /v1/leases/:leaseId/nack`. */
export const nackRequestSchema = z.object({
  delayMs: z.number().int().min(0).optional(),
  error: z.string().max(65_536).optional(),
});

/** `POST /v1/leases/:leaseId/dead-letter`. */
export const deadLetterRequestSchema = z.object({
  reason: z.string().min(1).max(65_536),
});

/** `POST /v1/leases/:leaseId/extend`. */
export const extendRequestSchema = z.object({
  ms: z.number().int().min(1).max(86_400_000).optional(),
});

/** Answer of an extend: the new end of the lease. */
export const extendResponseSchema = z.object({ leaseExpiresAt: z.number() });

/** Every error answer: a stable code and a message naming what was wrong. */
export const errorResponseSchema = z.object({
  error: z.object({ code: z.string(), message: z.string() }),
});

/** `GET /v1/token`: who the bearer token belongs to. */
export const tokenInfoSchema = z.object({
  name: z.string(),
  role: z.enum(['producer', 'worker', 'viewer', 'admin']),
  /** What the broker behind the gateway can do (absent from gateways before this field). */
  broker: z.object({ purge: z.boolean(), pause: z.boolean() }).optional(),
});

/** `POST /v1/queues/:queue/purge`. */
export const purgeResponseSchema = z.object({ queue: z.string(), purged: z.number().int() });
