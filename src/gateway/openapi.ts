import { z } from 'zod';
import {
  ackManyRequestSchema,
  ackManyResponseSchema,
  ackRequestSchema,
  deadLetterRequestSchema,
  errorResponseSchema,
  extendRequestSchema,
  extendResponseSchema,
  ingestResponseSchema,
  jobItemsResponseSchema,
  leaseRequestSchema,
  leaseResponseSchema,
  nackRequestSchema,
  publishRequestSchema,
  publishResponseSchema,
  queueListSchema,
  queueOptionsSchema,
  queueStatsSchema,
  tokenInfoSchema,
  workerReportSchema,
} from '../protocol/gateway-wire.js';
import { dashboardOpenApiPaths } from './routes/dashboard-openapi.js';
import { dashboardExperimentOpenApiPaths } from './routes/dashboard-experiment-openapi.js';

type Json = Record<string, unknown>;

const input = (s: z.ZodType): Json => z.toJSONSchema(s, { io: 'input' }) as Json;
const output = (s: z.ZodType): Json => z.toJSONSchema(s, { io: 'output' }) as Json;

const jsonBody = (schema: Json, required = true): Json => ({
  required,
  content: { 'application/json': { schema } },
});

const ok = (description: string, schema?: Json): Json => ({
  description,
  ...(schema && { content: { 'application/json': { schema } } }),
});

const error = (description: string): Json => ({
  description,
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
});

const queueParam = {
  name: 'queue',
  in: 'path',
  required: true,
  schema: { type: 'string', minLength: 1, maxLength: 255 },
};
const leaseParam = { name: 'leaseId', in: 'path', required: true, schema: { type: 'string' } };
const nameParam = { name: 'name', in: 'path', required: true, schema: { type: 'string' } };

/** Answers every authenticated operation may give. */
const common: Json = {
  '401': error('missing or invalid bearer token (with WWW-Authenticate: Bearer)'),
  '403': error("the token's role may not call this operation"),
  '429': error('over the per-token or per-IP rate limit (with Retry-After)'),
  '503': error('broker reconnecting, gateway overloaded or shutting down (with Retry-After)'),
};

const leaseOp = (summary: string, body?: Json): Json => ({
  post: {
    summary,
    tags: ['pull'],
    parameters: [leaseParam],
    ...(body && { requestBody: jsonBody(body, false) }),
    responses: {
      '204': ok('done'),
      '400': error('malformed JSON or invalid body'),
      '410': error('the lease is gone: settled, expired or handed back'),
      ...common,
    },
  },
});

/** The OpenAPI 3.1 document of the gateway API, served at `GET /openapi.json`. */
export function openApiDocument(): Json {
  return {
    openapi: '3.1.0',
    info: {
      title: 'qtune gateway',
      version: '1',
      description:
        'HTTP API in front of a qtune broker: bulk ingest of tasks, raw publish, queue statistics, ' +
        'and pull-consume with leases for workers that cannot reach the broker. Every /v1 operation ' +
        'needs a bearer token whose role allows it (admin may do everything).',
    },
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: { Error: output(errorResponseSchema) },
    },
    paths: {
      '/healthz': {
        get: {
          summary: 'liveness: 200 while the broker is connected, 503 otherwise',
          security: [],
          responses: { '200': ok('up'), '503': ok('broker not connected') },
        },
      },
      '/openapi.json': {
        get: { summary: 'this document', security: [], responses: { '200': ok('OpenAPI 3.1') } },
      },
      '/v1/token': {
        get: {
          summary: 'name and role of the bearer token (any role)',
          responses: { '200': ok('who', output(tokenInfoSchema)), ...common },
        },
      },
      '/v1/queues': {
        get: {
          summary: 'statistics of every queue, or names only with ?stats=false (any role)',
          parameters: [
            { name: 'stats', in: 'query', schema: { type: 'string', enum: ['true', 'false'] } },
          ],
          responses: { '200': ok('queues', output(queueListSchema)), ...common },
        },
      },
      '/v1/queues/{queue}': {
        parameters: [queueParam],
        get: {
          summary: 'statistics of one queue (any role)',
          responses: { '200': ok('stats', output(queueStatsSchema)), ...common },
        },
        put: {
          summary: 'declare the queue; an existing queue keeps its policy (worker, producer)',
          description:
            'Options left out match the existing queue; one that differs answers 409 QUEUE_MISMATCH. ' +
            'A temporary queue belongs to the token that declared it.',
          requestBody: jsonBody(input(queueOptionsSchema), false),
          responses: {
            '204': ok('declared'),
            '400': error('invalid options or name'),
            '409': error("the queue exists with other properties, or is another token's temporary"),
            ...common,
          },
        },
        delete: {
          summary:
            'delete the queue (admin; worker and producer: temporary queues their token declared)',
          responses: { '204': ok('deleted'), ...common },
        },
      },
      '/v1/queues/{queue}/tasks': {
        post: {
          summary:
            'bulk ingest: one task per payload, answered once every message is durable (producer)',
          description:
            'Body: a JSON array of payloads (application/json) or one payload per line ' +
            '(application/x-ndjson). The whole body is checked before anything is published. ' +
            'Results go to `<queue>.results`. With `Idempotency-Key`, ids are derived from the token ' +
            'name, the key and the index, and a repeated key within 24 h gets the stored answer with ' +
            '`Idempotent-Replayed: true`; after a gateway restart a retry publishes the same ids again.',
          parameters: [
            queueParam,
            {
              name: 'key',
              in: 'query',
              description: "payload field whose value becomes each task's idempotency key",
              schema: { type: 'string' },
            },
            { name: 'Idempotency-Key', in: 'header', schema: { type: 'string', maxLength: 255 } },
          ],
          requestBody: {
            required: true,
            content: {
              'application/json': { schema: { type: 'array', items: {} } },
              'application/x-ndjson': { schema: { type: 'string' } },
            },
          },
          responses: {
            '200': ok(
              'accepted (a replay carries Idempotent-Replayed: true)',
              output(ingestResponseSchema),
            ),
            '400': error(
              'malformed JSON or UTF-8 (with its position), nesting over 128 levels, a payload ' +
                'without the key field, or an envelope field a worker would refuse (item and field named)',
            ),
            '413': error('body over the limit'),
            '415': error('not application/json or application/x-ndjson'),
            '422': error('Idempotency-Key reused with another queue or body'),
            ...common,
            '503': {
              description:
                'broker unavailable, overloaded or shutting down (with Retry-After); when the broker ' +
                'failed part way, `accepted` and `ids` (null for an item not stored) say what was stored',
              content: {
                'application/json': {
                  schema: {
                    type: 'object',
                    required: ['error'],
                    properties: {
                      error: { $ref: '#/components/schemas/Error/properties/error' },
                      accepted: { type: 'integer' },
                      ids: { type: 'array', items: { type: ['string', 'null'] } },
                    },
                  },
                },
              },
            },
          },
        },
      },
      '/v1/queues/{queue}/messages': {
        post: {
          summary: 'publish raw broker messages, answered once durable (worker, producer)',
          parameters: [queueParam],
          requestBody: jsonBody(input(publishRequestSchema)),
          responses: {
            '200': ok('ids in order', output(publishResponseSchema)),
            '400': error('malformed JSON or invalid messages'),
            '413': error('body over the limit'),
            ...common,
          },
        },
      },
      '/v1/queues/{queue}/leases': {
        post: {
          summary: 'lease up to max deliveries, waiting up to waitMs for the first (worker)',
          tags: ['pull'],
          parameters: [queueParam],
          requestBody: jsonBody(input(leaseRequestSchema)),
          responses: {
            '200': ok('leases, empty after waitMs', output(leaseResponseSchema)),
            '400': error('invalid request'),
            ...common,
          },
        },
      },
      '/v1/queues/{queue}/consumers/{consumer}': {
        delete: {
          summary:
            "a client consumer stopped: its waiting polls end, it no longer counts (worker; another token's consumer: admin only)",
          tags: ['pull'],
          parameters: [
            queueParam,
            { name: 'consumer', in: 'path', required: true, schema: { type: 'string' } },
          ],
          responses: { '204': ok('done'), ...common },
        },
      },
      '/v1/leases/ack': {
        post: {
          summary: 'ack many leases at once; ids no longer held are skipped and listed (worker)',
          tags: ['pull'],
          requestBody: jsonBody(input(ackManyRequestSchema)),
          responses: {
            '200': ok(
              'how many were acked, and the ids that were gone',
              output(ackManyResponseSchema),
            ),
            '400': error('invalid request'),
            ...common,
          },
        },
      },
      '/v1/leases/{leaseId}/ack': leaseOp(
        'ack; with `publish`, publish those messages first (a worker hands in its result)',
        input(ackRequestSchema),
      ),
      '/v1/leases/{leaseId}/nack': leaseOp(
        'give back for another delivery after delayMs, recording error',
        input(nackRequestSchema),
      ),
      '/v1/leases/{leaseId}/release': leaseOp('give back uncounted (never started)'),
      '/v1/leases/{leaseId}/dead-letter': leaseOp(
        'move to the dead-letter queue with reason',
        input(deadLetterRequestSchema),
      ),
      '/v1/leases/{leaseId}/extend': {
        post: {
          summary: "extend the lease to ms from now (default: the queue's lease)",
          tags: ['pull'],
          parameters: [leaseParam],
          requestBody: jsonBody(input(extendRequestSchema), false),
          responses: {
            '200': ok('new end of the lease', output(extendResponseSchema)),
            '410': error('the lease is gone'),
            ...common,
          },
        },
      },
      '/v1/jobs/{name}': {
        get: {
          summary: 'status of a job (any role)',
          parameters: [nameParam],
          responses: { '200': ok('status'), '404': error('no such job'), ...common },
        },
      },
      '/v1/jobs/{name}/items': {
        post: {
          summary: 'add items to a job, creating it, as `qtune job submit` does (producer)',
          description:
            'Body: a JSON array of objects or NDJSON. Each item is keyed by the fields of `?key=a,b` ' +
            "(a new job; default: the whole item) or by the existing job's key fields; an item " +
            'whose key the job has is not added again. Its tasks go to the queue named after the job.',
          parameters: [
            nameParam,
            {
              name: 'key',
              in: 'query',
              description: 'comma-separated key fields of a new job',
              schema: { type: 'string' },
            },
          ],
          requestBody: {
            required: true,
            content: {
              'application/json': { schema: { type: 'array', items: { type: 'object' } } },
              'application/x-ndjson': { schema: { type: 'string' } },
            },
          },
          responses: {
            '200': ok('added', output(jobItemsResponseSchema)),
            '400': error('malformed body, an item that is not an object, or other key fields'),
            '501': error('the gateway has no store (qtune serve --store)'),
            ...common,
          },
        },
      },
      '/v1/experiments/{name}': {
        get: {
          summary: 'status of an experiment (any role)',
          parameters: [nameParam],
          responses: { '200': ok('status'), '404': error('no such experiment'), ...common },
        },
      },
      '/v1/workers/{id}': {
        put: {
          summary:
            'a worker that pulls through the gateway pushes its status report; the gateway answers qtune status for it for 15 s (worker)',
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
          requestBody: jsonBody(input(workerReportSchema)),
          responses: { '204': ok('stored'), '400': error('invalid report'), ...common },
        },
      },
      '/v1/workers': {
        get: {
          summary: 'reports of the live workers connected to the broker (any role)',
          parameters: [
            {
              name: 'waitMs',
              in: 'query',
              schema: { type: 'integer', minimum: 0, maximum: 10000 },
            },
          ],
          responses: {
            '200': ok('reports'),
            '501': error('the broker has no topics'),
            ...common,
          },
        },
      },
      ...dashboardOpenApiPaths(),
      ...dashboardExperimentOpenApiPaths(),
    },
  };
}
