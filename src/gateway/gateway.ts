import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import rateLimit from '@fastify/rate-limit';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type {
  Broker,
  BrokerStatus,
  Consumer,
  OutgoingMessage,
  QueueStats,
} from '../broker/contract.js';
import {
  ackManyRequestSchema,
  ackRequestSchema,
  deadLetterRequestSchema,
  extendRequestSchema,
  leaseRequestSchema,
  nackRequestSchema,
  publishRequestSchema,
  consumerNameSchema,
  jobNameSchema,
  queueNameSchema,
  workerReportSchema,
  queueOptionsSchema,
  type IngestResponse,
  type WireLease,
  type WireMessage,
} from '../broker/gateway/wire.js';
import { resultQueueOf } from '../patterns/work-queue.js';
import { BrokerError, ErrorCode, InputError, QtuneError, toError } from '../protocol/errors.js';
import { printable } from '../protocol/names.js';
import { gatherWorkerReports, serveStatusRequests, type WorkerReport } from '../worker/control.js';
import {
  ANONYMOUS,
  Role,
  TokenVerifier,
  roleAllowed,
  type AuthConfig,
  type Principal,
} from './auth.js';
import { GatewayErrorCode, HttpError } from './errors.js';
import { IdempotencyCache, deterministicId, requestFingerprint } from './idempotency.js';
import {
  MediaType,
  bodyText,
  checkDepth,
  itemName,
  keysFrom,
  parseJsonArray,
  parseNdjson,
  taskMessages,
  type ParsedBody,
} from './ingest.js';
import { jsonErrorPosition } from './json-position.js';
import { manageRoutes } from './manage.js';
import { dashboardRoutes, type DashboardOptions } from './routes/dashboard.js';
import { openApiDocument } from './openapi.js';
import { PullHub, type LeaseEntry } from './pull.js';

/** Status lookups the gateway answers through; each resolves undefined for an unknown name. */
export interface GatewayStatusProviders {
  /** `GET /v1/jobs/:name`. */
  job?(name: string): Promise<unknown>;
  /** `GET /v1/experiments/:name`. */
  experiment?(name: string): Promise<unknown>;
}

/** What `POST /v1/jobs/:name/items` answers: the counts of `submitJob`. */
export interface JobItemsAnswer {
  job: string;
  /** Items in the request. */
  items: number;
  /** Items new to the job (the others were added before: same key). */
  added: number;
  /** Tasks published by this request. */
  published: number;
}

/** Adds items to a job (creating it), as `qtune job submit` does; see src/job/submit.ts. */
export interface GatewayJobs {
  /** Adds `items` to job `name`; `keyFields` set the key of a new job (default: whole item). */
  addItems(
    name: string,
    items: readonly Record<string, unknown>[],
    keyFields: readonly string[] | undefined,
  ): Promise<JobItemsAnswer>;
}

export interface GatewayOptions {
  /** The broker the gateway fronts; the caller opens and closes it. */
  broker: Broker;
  auth: AuthConfig;
  /** Largest request body in bytes (default: 64 MiB). */
  bodyLimit?: number;
  /** Where the gateway logs; the Authorization header is redacted (default: no logs). */
  logger?: Logger;
  /** Deliveries held per queue for pull-consuming clients (default: 256). */
  pullPrefetch?: number;
  /** Messages waiting for broker confirmation above which publishes get 503 (default: 200000). */
  maxPendingPublishes?: number;
  /** Requests per second per token, unless its entry sets another (default: 1000). */
  rateLimit?: number;
  /**
   * Requests per second per client IP address, counted before the token is checked, so that
   * requests with bad tokens are limited too (default: 10 times `rateLimit`).
   */
  ipRateLimit?: number;
  /** Job and experiment status lookups (default: none, those endpoints answer 404). */
  status?: GatewayStatusProviders;
  /** Adds items to jobs (default: none, `POST /v1/jobs/:name/items` answers 501). */
  jobs?: GatewayJobs;
  /** A queue nobody polled for this long stops its broker consumer, in ms (default: 10000). */
  pullIdleMs?: number;
  /** The web dashboard's store and sampler (default: no store, queues and workers only). */
  dashboard?: Omit<DashboardOptions, 'broker'>;
}

/** Defaults of {@link GatewayOptions}. */
export const GATEWAY_DEFAULTS = {
  bodyLimit: 64 * 1024 * 1024,
  pullPrefetch: 256,
  maxPendingPublishes: 200_000,
  rateLimit: 1_000,
} as const;

/** Messages per broker publish call on the ingest path. */
const PUBLISH_BATCH = 1_000;
/** Publish calls of one request in flight at once (in order). */
const PUBLISH_WINDOW = 4;
/** Wait for worker reports on `GET /v1/workers` unless `?waitMs=` says (ms). */
const WORKERS_WAIT_MS = 500;
/** A report pushed by a gateway worker counts this long, in ms (workers push every 5 s). */
const WORKER_REPORT_TTL_MS = 15_000;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Roles that may call the route (admin may call every route; default: admin only). */
    roles?: readonly Role[];
    /** The route needs no token. */
    public?: boolean;
  }
}

const ANY_ROLE: readonly Role[] = [Role.Producer, Role.Worker, Role.Viewer, Role.Admin];

/**
 * Creates the HTTP gateway (a fastify app, not yet listening): bulk ingest, raw publish, queue
 * declaration and statistics, pull-consume with leases for workers that cannot reach the broker,
 * status lookups, bearer-token auth with roles and per-token rate limits. Closing the app ends
 * waiting polls and hands back every delivery it holds; it does not close the broker.
 */
export function createGateway(options: GatewayOptions): FastifyInstance {
  const broker = options.broker;
  const bodyLimit = options.bodyLimit ?? GATEWAY_DEFAULTS.bodyLimit;
  const maxPending = options.maxPendingPublishes ?? GATEWAY_DEFAULTS.maxPendingPublishes;
  const defaultRate = options.rateLimit ?? GATEWAY_DEFAULTS.rateLimit;
  const ipRate = options.ipRateLimit ?? defaultRate * 10;
  const verifier = new TokenVerifier(options.auth.tokens);
  const authDisabled = options.auth.disabled === true;
  const principals = new WeakMap<FastifyRequest, Principal>();
  const idempotency = new IdempotencyCache();
  const declared = new Map<string, Promise<void>>();
  /** Temporary queues declared through this gateway → the token that declared (owns) each. */
  const temporaryQueues = new Map<string, string>();
  /** Reports pushed by workers that pull through this gateway, by token and worker id. */
  const pushedReports = new Map<string, { report: WorkerReport; at: number }>();
  const freshReports = (): WorkerReport[] => {
    const now = Date.now();
    const out: WorkerReport[] = [];
    for (const [k, r] of pushedReports) {
      if (now - r.at > WORKER_REPORT_TTL_MS) pushedReports.delete(k);
      else out.push(r.report);
    }
    return out;
  };
  /** Answers `qtune status` on the broker for the workers that push their reports here. */
  let answering: Promise<Consumer> | undefined;
  let pending = 0;
  let brokerStatus: BrokerStatus = 'connected';
  const onStatus = (s: BrokerStatus): void => {
    brokerStatus = s;
  };
  broker.on('status', onStatus);

  const logger = options.logger?.child(
    { component: 'gateway' },
    {
      redact: {
        paths: [
          'req.headers.authorization',
          'headers.authorization',
          'authorization',
          'req.headers.cookie',
        ],
        censor: '[redacted]',
      },
    },
  );
  const app = Fastify({
    ...(logger ? { loggerInstance: logger as FastifyBaseLogger } : { logger: false }),
    bodyLimit,
    routerOptions: { maxParamLength: 512 },
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    // The router's own refusals (bad %-escapes, over-long parameters) in the documented shape.
    frameworkErrors: (thrown, _req, reply) => {
      const err = asHttpError(thrown, bodyLimit);
      void (reply as FastifyReply).code(err.statusCode).send(errorBody(err.code, err.message));
    },
    // Requests node's HTTP parser refuses never reach fastify: answered on the socket.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const [status, code, message] =
        err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, GatewayErrorCode.BadInput, 'the request was not received in time']
          : err.code === 'HPE_HEADER_OVERFLOW'
            ? [431, GatewayErrorCode.BadInput, 'the request headers are too large']
            : [400, GatewayErrorCode.BadInput, 'the request is not valid HTTP'];
      const body = JSON.stringify(errorBody(code, message));
      if (socket.writable) {
        socket.write(
          `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`,
        );
      }
      socket.destroy(err);
    },
  });
  const hub = new PullHub({
    broker,
    prefetch: options.pullPrefetch ?? GATEWAY_DEFAULTS.pullPrefetch,
    ...(options.pullIdleMs !== undefined && { idleMs: options.pullIdleMs }),
    logger: app.log,
  });

  // Bodies stay bytes: each endpoint parses its own JSON once, with positions in its errors.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    [MediaType.Json, MediaType.Ndjson],
    { parseAs: 'buffer' },
    (_req, body, done) => done(null, body),
  );

  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .send(
        errorBody(GatewayErrorCode.NotFound, `no route ${req.method} ${req.url.split('?')[0]}`),
      );
  });
  app.setErrorHandler((thrown: FastifyError | Error, req, reply) => {
    const err = asHttpError(thrown, bodyLimit);
    if (err.retryAfterS !== undefined) void reply.header('retry-after', String(err.retryAfterS));
    if (err.statusCode === 401) void reply.header('www-authenticate', 'Bearer realm="qtune"');
    const log = { reqId: req.id, method: req.method, url: req.url, status: err.statusCode };
    if (err.code === GatewayErrorCode.Internal) {
      req.log.error(
        { ...log, err: err.message, stack: toError(err.cause).stack },
        'request failed',
      );
    } else if (err.statusCode >= 500) req.log.warn({ ...log, err: err.message }, 'request failed');
    else req.log.debug({ ...log, code: err.code }, 'request refused');
    void reply.code(err.statusCode).send({ ...errorBody(err.code, err.message), ...err.details });
  });
  app.addHook('onResponse', (req, reply, done) => {
    req.log.debug(
      {
        reqId: req.id,
        method: req.method,
        url: req.url,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
        token: principals.get(req)?.name,
      },
      'request',
    );
    done();
  });

  // Per-IP rate limit first (bad tokens count too), then authentication and roles, then the
  // per-token rate limit; the body is read after all of them.
  type Limiter = ReturnType<FastifyInstance['createRateLimit']>;
  let limiters: { ip: Limiter; token: Limiter } | undefined;
  const limit = async (
    limiter: Limiter,
    req: FastifyRequest,
    who: string | undefined,
  ): Promise<void> => {
    const r = await limiter(req);
    if (r.isAllowed || !r.isExceeded) return;
    throw new HttpError(
      429,
      GatewayErrorCode.RateLimited,
      `${who !== undefined ? `token "${who}"` : `client ${req.ip}`}: over ${r.max} requests per second; retry in ${r.ttlInSeconds} s`,
      { retryAfterS: Math.max(1, r.ttlInSeconds) },
    );
  };
  app.addHook('onRequest', async (req) => {
    const access = req.routeOptions.config ?? {};
    if (access.public) return;
    limiters ??= {
      ip: app.createRateLimit({
        timeWindow: 1_000,
        max: ipRate,
        keyGenerator: (r) => `ip:${r.ip}`,
      }),
      token: app.createRateLimit({
        timeWindow: 1_000,
        max: (r) => principals.get(r)?.rateLimit ?? defaultRate,
        keyGenerator: (r) => `token:${principals.get(r)?.name ?? ''}`,
      }),
    };
    await limit(limiters.ip, req, undefined);
    if (req.is404) return;
    let principal: Principal | undefined;
    if (authDisabled) principal = ANONYMOUS;
    else principal = verifier.verify(req.headers.authorization);
    if (!principal) {
      throw new HttpError(
        401,
        GatewayErrorCode.Unauthorized,
        req.headers.authorization === undefined
          ? 'missing bearer token (header "Authorization: Bearer TOKEN")'
          : 'invalid bearer token',
      );
    }
    const roles = access.roles ?? [Role.Admin];
    if (!roleAllowed(principal.role, roles)) {
      throw new HttpError(
        403,
        GatewayErrorCode.Forbidden,
        `token "${principal.name}" has role ${principal.role}; ${req.method} ${req.routeOptions.url} needs ${roles.join(' or ')}`,
      );
    }
    principals.set(req, principal);
    await limit(limiters.token, req, principal.name);
  });

  // Closing: answers still being sent close their connection, so the server can finish.
  let closing = false;
  app.addHook('onSend', (_req, reply, payload, done) => {
    if (closing) void reply.header('connection', 'close');
    done(null, payload);
  });
  app.addHook('preClose', (done) => {
    closing = true;
    hub.endPolls();
    done();
  });
  app.addHook('onClose', async () => {
    broker.off('status', onStatus);
    await answering?.then((c) => c.cancel()).catch(() => undefined);
    await hub.close();
  });

  // The limiters are made in the onRequest hook above (createRateLimit); no route hooks.
  void app.register(rateLimit, { global: false });

  void app.register(async (api) => {
    const principal = (req: FastifyRequest): Principal => principals.get(req) ?? ANONYMOUS;

    const brokerUp = (): void => {
      if (brokerStatus !== 'connected') {
        throw new HttpError(
          503,
          GatewayErrorCode.BrokerUnavailable,
          `the broker is ${brokerStatus}; retry shortly`,
          { retryAfterS: 1 },
        );
      }
    };

    const overloaded = (): HttpError =>
      new HttpError(
        503,
        GatewayErrorCode.Overloaded,
        `${pending} messages are waiting for broker confirmation (limit ${maxPending}); retry shortly`,
        { retryAfterS: 1 },
      );

    /** Counts `n` messages as waiting for confirmation; 503 over the limit when `refuse`. */
    const admit = (n: number, refuse = true): (() => void) => {
      if (refuse && pending > 0 && pending + n > maxPending) throw overloaded();
      pending += n;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        pending -= n;
      };
    };

    const ensureDeclared = async (queue: string): Promise<void> => {
      let p = declared.get(queue);
      if (!p) {
        p = broker.declareQueue(queue);
        declared.set(queue, p);
        p.catch(() => declared.delete(queue));
      }
      await p;
    };

    // --- public -----------------------------------------------------------------------------

    api.get('/healthz', { config: { public: true, rateLimit: false } }, async (_req, reply) => {
      if (brokerStatus !== 'connected') void reply.code(503).header('retry-after', '1');
      return { status: brokerStatus === 'connected' ? 'ok' : 'unavailable', broker: brokerStatus };
    });

    let document: object | undefined;
    api.get('/openapi.json', { config: { public: true, rateLimit: false } }, async () => {
      document ??= openApiDocument();
      return document;
    });

    // --- identity ---------------------------------------------------------------------------

    api.get('/v1/token', { config: { roles: ANY_ROLE } }, async (req) => {
      const p = principal(req);
      return { name: p.name, role: p.role };
    });

    // --- ingest -----------------------------------------------------------------------------

    api.post<{ Params: { queue: string }; Querystring: { key?: string } }>(
      '/v1/queues/:queue/tasks',
      { config: { roles: [Role.Producer] } },
      async (req, reply) => {
        const queue = queueParam(req.params.queue);
        const where = `queue "${queue}"`;
        const type = mediaType(req);
        const body = bodyOf(req);
        const keyField = req.query.key;
        if (keyField !== undefined && (typeof keyField !== 'string' || keyField === '')) {
          throw new HttpError(400, GatewayErrorCode.BadInput, 'query "key" must name a field');
        }
        brokerUp();
        if (pending >= maxPending) throw overloaded();
        const p = principal(req);
        const idemKey = headerValue(req, 'idempotency-key');
        if (idemKey !== undefined && (idemKey.length === 0 || idemKey.length > 255)) {
          throw new HttpError(
            400,
            GatewayErrorCode.BadInput,
            `header "Idempotency-Key" must be 1 to 255 characters, got ${idemKey.length}`,
          );
        }
        const slot =
          idemKey === undefined
            ? undefined
            : idempotency.begin(
                p.name,
                idemKey,
                requestFingerprint(`${queue}?key=${keyField ?? ''}`, type, body),
              );
        if (slot?.kind === 'conflict') {
          throw new HttpError(
            422,
            GatewayErrorCode.IdempotencyKeyReused,
            `Idempotency-Key ${JSON.stringify(idemKey)} was used with another queue or body`,
          );
        }
        if (slot?.kind === 'replay') {
          let stored;
          try {
            stored = await slot.answer;
          } catch {
            throw new HttpError(
              409,
              GatewayErrorCode.BrokerState,
              `the first request with Idempotency-Key ${JSON.stringify(idemKey)} failed; retry it`,
            );
          }
          void reply.header('idempotent-replayed', 'true');
          return reply.code(stored.statusCode).send(stored.body);
        }
        try {
          const parsed: ParsedBody =
            type === MediaType.Ndjson ? parseNdjson(body, where) : parseJsonArray(body, where);
          const keys = keyField !== undefined ? keysFrom(parsed, keyField, where) : undefined;
          const n = parsed.payloads.length;
          const ids =
            idemKey !== undefined
              ? Array.from({ length: n }, (_, i) => deterministicId(p.name, idemKey, i))
              : undefined;
          const replyTo = resultQueueOf(queue);
          const messages = taskMessages(parsed, replyTo, keys, ids, where);
          parsed.payloads.length = 0;
          // A retry (same Idempotency-Key and body) of a request that failed part way
          // publishes only what that one did not store.
          const already = slot?.kind === 'first' ? slot.stored : undefined;
          const todo = already ? messages.filter((_, i) => !already[i]) : messages;
          const done = admit(todo.length);
          try {
            await ensureDeclared(queue);
            await ensureDeclared(replyTo);
            await publishInBatches(broker, queue, todo);
          } catch (err) {
            if (!(err instanceof PartialPublish)) throw err;
            // Which of all n items are stored now, this request's and the earlier ones'.
            const stored: boolean[] = [];
            let k = 0;
            for (let i = 0; i < n; i++) stored.push(already?.[i] === true || err.stored[k++]!);
            if (slot?.kind === 'first') slot.fail(stored);
            throw partialAnswer(err, messages, stored);
          } finally {
            done();
          }
          const answer: IngestResponse = { accepted: n, ids: messages.map((m) => m.id!) };
          if (slot?.kind === 'first') slot.done({ statusCode: 200, body: answer });
          return answer;
        } catch (err) {
          if (slot?.kind === 'first') slot.fail();
          throw err;
        }
      },
    );

    api.post<{ Params: { queue: string } }>(
      '/v1/queues/:queue/messages',
      { config: { roles: [Role.Worker, Role.Producer] } },
      async (req) => {
        const queue = queueParam(req.params.queue);
        const { messages } = readJson(req, publishRequestSchema, `queue "${queue}" messages`);
        brokerUp();
        const done = admit(messages.length);
        try {
          return { ids: await broker.publish(queue, messages.map(toOutgoing)) };
        } finally {
          done();
        }
      },
    );

    // --- queues -----------------------------------------------------------------------------

    api.put<{ Params: { queue: string } }>(
      '/v1/queues/:queue',
      { config: { roles: [Role.Worker, Role.Producer] } },
      async (req, reply) => {
        const queue = queueParam(req.params.queue);
        const opts = readJson(req, queueOptionsSchema, `queue "${queue}" options`);
        const p = principal(req);
        // The broker sees one handle (this gateway) for every token: ownership is kept here.
        const owner = temporaryQueues.get(queue);
        if (opts.temporary === true && owner !== undefined && owner !== p.name) {
          throw new HttpError(
            409,
            GatewayErrorCode.QueueMismatch,
            `queue "${queue}" is a temporary queue of another token; declared as temporary by token "${p.name}"`,
          );
        }
        brokerUp();
        await broker.declareQueue(queue, stripUndefined(opts));
        if (opts.temporary === true && owner === undefined) temporaryQueues.set(queue, p.name);
        declared.set(queue, Promise.resolve());
        return reply.code(204).send();
      },
    );

    api.delete<{ Params: { queue: string } }>(
      '/v1/queues/:queue',
      { config: { roles: [Role.Worker, Role.Producer] } },
      async (req, reply) => {
        const queue = queueParam(req.params.queue);
        const p = principal(req);
        if (p.role !== Role.Admin && temporaryQueues.get(queue) !== p.name) {
          throw new HttpError(
            403,
            GatewayErrorCode.Forbidden,
            `token "${p.name}" has role ${p.role}; only admin may delete queue "${queue}" (others may delete the temporary queues they declared)`,
          );
        }
        brokerUp();
        await broker.deleteQueue(queue);
        temporaryQueues.delete(queue);
        declared.delete(queue);
        return reply.code(204).send();
      },
    );

    api.get<{ Querystring: { stats?: string } }>(
      '/v1/queues',
      { config: { roles: ANY_ROLE } },
      async (req) => {
        brokerUp();
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
        brokerUp();
        return hub.adjustStats(await broker.stats(queue));
      },
    );

    // --- pull-consume -----------------------------------------------------------------------

    api.post<{ Params: { queue: string } }>(
      '/v1/queues/:queue/leases',
      { config: { roles: [Role.Worker] } },
      async (req, res) => {
        const queue = queueParam(req.params.queue);
        const ask = readJson(req, leaseRequestSchema, `queue "${queue}" lease request`);
        brokerUp();
        const entries = await hub.lease(
          queue,
          {
            max: ask.max,
            waitMs: ask.waitMs,
            ...(ask.leaseMs !== undefined && { leaseMs: ask.leaseMs }),
            ...(ask.consumer !== undefined && { consumer: ask.consumer }),
          },
          principal(req).name,
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
      },
    );

    api.delete<{ Params: { queue: string; consumer: string } }>(
      '/v1/queues/:queue/consumers/:consumer',
      { config: { roles: [Role.Worker] } },
      async (req, reply) => {
        const queue = queueParam(req.params.queue);
        const consumer = nameParam(req.params.consumer, consumerNameSchema, 'consumer');
        const p = principal(req);
        hub.cancelClient(queue, consumer, p.name, p.role === Role.Admin);
        return reply.code(204).send();
      },
    );

    /** Refuses (403) a lease taken under another token than the caller's, unless admin. */
    const checkOwner = (entry: LeaseEntry, req: FastifyRequest): void => {
      const p = principal(req);
      if (p.role !== Role.Admin && entry.principal !== p.name) {
        throw new HttpError(
          403,
          GatewayErrorCode.Forbidden,
          `lease "${entry.id}" belongs to another token than "${p.name}"`,
        );
      }
    };

    const ownLease = (req: FastifyRequest<{ Params: { leaseId: string } }>): string => {
      const entry = hub.get(req.params.leaseId);
      checkOwner(entry, req);
      return entry.id;
    };

    api.post('/v1/leases/ack', { config: { roles: [Role.Worker] } }, async (req) => {
      const body = readJson(req, ackManyRequestSchema, 'ack');
      // Every listed lease must be the caller's before any is acked.
      for (const id of body.leaseIds) {
        const entry = hub.find(id);
        if (entry) checkOwner(entry, req);
      }
      const gone = await hub.ackMany(body.leaseIds);
      return { acked: body.leaseIds.length - gone.length, gone };
    });

    api.post<{ Params: { leaseId: string } }>(
      '/v1/leases/:leaseId/ack',
      { config: { roles: [Role.Worker] } },
      async (req, reply) => {
        const body = readJson(req, ackRequestSchema, 'ack');
        const id = ownLease(req);
        if (body.publish) {
          const target = body.publish.queue;
          const messages = body.publish.messages.map(toOutgoing);
          const done = admit(messages.length, false);
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
      { config: { roles: [Role.Worker] } },
      async (req, reply) => {
        const body = readJson(req, nackRequestSchema, 'nack');
        await hub.nack(ownLease(req), stripUndefined(body));
        return reply.code(204).send();
      },
    );

    api.post<{ Params: { leaseId: string } }>(
      '/v1/leases/:leaseId/release',
      { config: { roles: [Role.Worker] } },
      async (req, reply) => {
        await hub.release(ownLease(req));
        return reply.code(204).send();
      },
    );

    api.post<{ Params: { leaseId: string } }>(
      '/v1/leases/:leaseId/dead-letter',
      { config: { roles: [Role.Worker] } },
      async (req, reply) => {
        const body = readJson(req, deadLetterRequestSchema, 'dead-letter');
        await hub.deadLetter(ownLease(req), body.reason);
        return reply.code(204).send();
      },
    );

    api.post<{ Params: { leaseId: string } }>(
      '/v1/leases/:leaseId/extend',
      { config: { roles: [Role.Worker] } },
      async (req) => {
        const body = readJson(req, extendRequestSchema, 'extend');
        return { leaseExpiresAt: await hub.extend(ownLease(req), body.ms) };
      },
    );

    // --- status -----------------------------------------------------------------------------

    const lookup =
      (kind: 'job' | 'experiment') =>
      async (req: FastifyRequest<{ Params: { name: string } }>): Promise<unknown> => {
        const provider = options.status?.[kind];
        const name = req.params.name;
        const found = provider ? await provider.call(options.status, name) : undefined;
        if (found === undefined || found === null) {
          throw new HttpError(404, GatewayErrorCode.NotFound, `no ${kind} named "${name}"`);
        }
        return found;
      };
    api.get('/v1/jobs/:name', { config: { roles: ANY_ROLE } }, lookup('job'));

    api.post<{ Params: { name: string }; Querystring: { key?: string } }>(
      '/v1/jobs/:name/items',
      { config: { roles: [Role.Producer] } },
      async (req) => {
        const name = nameParam(req.params.name, jobNameSchema, 'name');
        const where = `job "${name}"`;
        const type = mediaType(req);
        const body = bodyOf(req);
        const keyParam = req.query.key;
        if (keyParam !== undefined && (typeof keyParam !== 'string' || keyParam === '')) {
          throw new HttpError(400, GatewayErrorCode.BadInput, 'query "key" must name fields: a,b');
        }
        if (!options.jobs) {
          throw new HttpError(
            501,
            GatewayErrorCode.StoreUnavailable,
            'this gateway has no store for jobs (qtune serve --store URL)',
          );
        }
        const parsed =
          type === MediaType.Ndjson ? parseNdjson(body, where) : parseJsonArray(body, where);
        const items = parsed.payloads.map((item, i) => {
          if (item === null || typeof item !== 'object' || Array.isArray(item)) {
            throw new HttpError(
              400,
              GatewayErrorCode.BadInput,
              `${where}: ${itemName(parsed, i)} is not a JSON object; nothing was added`,
            );
          }
          return item as Record<string, unknown>;
        });
        brokerUp();
        return options.jobs.addItems(name, items, keyParam?.split(','));
      },
    );
    api.get('/v1/experiments/:name', { config: { roles: ANY_ROLE } }, lookup('experiment'));

    api.put<{ Params: { id: string } }>(
      '/v1/workers/:id',
      { config: { roles: [Role.Worker] } },
      async (req, reply) => {
        const id = nameParam(req.params.id, consumerNameSchema, 'id');
        const report = readJson(req, workerReportSchema, `worker "${id}" report`);
        if (report.worker.id !== id) {
          throw new HttpError(
            400,
            GatewayErrorCode.BadInput,
            `worker "${id}" report: "worker.id" is "${printable(report.worker.id)}", not the path's id`,
          );
        }
        pushedReports.set(`${principal(req).name}/${id}`, {
          report: report as WorkerReport,
          at: Date.now(),
        });
        if (broker.capabilities.topics && !answering) {
          answering = serveStatusRequests(broker, freshReports);
          answering.catch(() => (answering = undefined));
        }
        return reply.code(204).send();
      },
    );

    api.get<{ Querystring: { waitMs?: string } }>(
      '/v1/workers',
      { config: { roles: ANY_ROLE } },
      async (req) => {
        if (!broker.capabilities.topics) {
          throw new HttpError(
            501,
            GatewayErrorCode.TopicsUnavailable,
            `the ${broker.kind} broker behind this gateway has no topics, so workers cannot be asked`,
          );
        }
        const raw = req.query.waitMs;
        const waitMs = raw === undefined ? WORKERS_WAIT_MS : Number(raw);
        if (!Number.isInteger(waitMs) || waitMs < 0 || waitMs > 10_000) {
          throw new HttpError(
            400,
            GatewayErrorCode.BadInput,
            `query "waitMs" must be an integer 0..10000, got ${JSON.stringify(raw)}`,
          );
        }
        brokerUp();
        return { workers: await gatherWorkerReports(broker, waitMs) };
      },
    );
  });
  void app.register(manageRoutes, { broker, ...(options.status && { status: options.status }) });
  void app.register(dashboardRoutes, { broker, ...options.dashboard });

  return app;
}

/** A publish of many batches that failed part way; `stored[i]`: message i was stored. */
class PartialPublish extends Error {
  readonly stored: readonly boolean[];
  constructor(cause: unknown, stored: readonly boolean[]) {
    super(toError(cause).message, { cause });
    this.stored = stored;
  }
}

/**
 * Publishes `messages` a batch at a time, a few batches in flight. When one fails, no further
 * batch is started and the ones in flight finish; then it throws PartialPublish saying which
 * messages the broker stored.
 */
async function publishInBatches(
  broker: Broker,
  queue: string,
  messages: readonly OutgoingMessage[],
): Promise<void> {
  const batches: { at: number; result: Promise<unknown> }[] = [];
  const inFlight: Promise<unknown>[] = [];
  let failed = false;
  for (let at = 0; at < messages.length && !failed; at += PUBLISH_BATCH) {
    const result = broker.publish(queue, messages.slice(at, at + PUBLISH_BATCH));
    batches.push({ at, result });
    inFlight.push(result.catch(() => (failed = true)));
    if (inFlight.length >= PUBLISH_WINDOW) await inFlight.shift();
  }
  const settled = await Promise.allSettled(batches.map((b) => b.result));
  const failure = settled.find((r) => r.status === 'rejected');
  if (failure === undefined) return;
  const stored = new Array<boolean>(messages.length).fill(false);
  settled.forEach((r, b) => {
    if (r.status !== 'fulfilled') return;
    const at = batches[b]!.at;
    stored.fill(true, at, Math.min(messages.length, at + PUBLISH_BATCH));
  });
  throw new PartialPublish(failure.reason, stored);
}

/**
 * The answer to an ingest that failed part way: the broker's error, with `accepted` and `ids`
 * (`ids[i]` is item i's id when it is stored, null when not) so a client retries exactly the
 * others.
 */
function partialAnswer(
  err: PartialPublish,
  messages: readonly OutgoingMessage[],
  stored: readonly boolean[],
): HttpError {
  const ids = messages.map((m, i) => (stored[i] ? m.id! : null));
  const accepted = stored.filter(Boolean).length;
  const e = asHttpError(err.cause, 0);
  return new HttpError(
    e.statusCode,
    e.code,
    `${e.message}; ${accepted} of ${messages.length} items were stored (those with an id in "ids"): retry only the others, or the same request with the same Idempotency-Key`,
    {
      cause: err.cause,
      ...(e.retryAfterS !== undefined && { retryAfterS: e.retryAfterS }),
      details: { accepted, ids },
    },
  );
}

function errorBody(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

/** Maps whatever a handler threw to an HttpError with a stable code. */
function asHttpError(thrown: unknown, bodyLimit: number): HttpError {
  if (thrown instanceof HttpError) return thrown;
  const err = toError(thrown);
  const fst = err as FastifyError;
  switch (fst.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HttpError(
        413,
        GatewayErrorCode.PayloadTooLarge,
        `request body is over the gateway's limit of ${bodyLimit} bytes (qtune serve --body-limit); nothing was published`,
      );
    case 'FST_ERR_BAD_URL':
      return new HttpError(
        400,
        GatewayErrorCode.BadInput,
        `the URL path has a %-escape that does not decode: ${printable(err.message)}`,
      );
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new HttpError(
        414,
        GatewayErrorCode.BadInput,
        'a path parameter is over 512 characters (names are at most 200 bytes)',
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HttpError(
        415,
        GatewayErrorCode.UnsupportedMediaType,
        `${err.message}; send application/json or application/x-ndjson`,
      );
    default:
      break;
  }
  if (err instanceof InputError) return new HttpError(400, GatewayErrorCode.BadInput, err.message);
  if (err instanceof BrokerError && err.code === ErrorCode.BrokerUnavailable) {
    return new HttpError(503, GatewayErrorCode.BrokerUnavailable, err.message, {
      retryAfterS: 1,
      cause: err,
    });
  }
  if (err instanceof QtuneError && err.code === ErrorCode.BadInput) {
    return new HttpError(400, GatewayErrorCode.BadInput, err.message);
  }
  if (err instanceof QtuneError && err.code === ErrorCode.QueueMismatch) {
    return new HttpError(409, GatewayErrorCode.QueueMismatch, err.message, { cause: err });
  }
  if (err instanceof QtuneError && err.code === ErrorCode.NotFound) {
    return new HttpError(404, GatewayErrorCode.NotFound, err.message, { cause: err });
  }
  if (err instanceof QtuneError) {
    return new HttpError(409, GatewayErrorCode.BrokerState, err.message, { cause: err });
  }
  const status = typeof fst.statusCode === 'number' ? fst.statusCode : 500;
  if (status >= 400 && status < 500) {
    return new HttpError(status, GatewayErrorCode.BadInput, err.message, { cause: err });
  }
  return new HttpError(500, GatewayErrorCode.Internal, err.message, { cause: err });
}

function queueParam(raw: string): string {
  return nameParam(raw, queueNameSchema, 'queue');
}

/** A name from the path, checked by `schema`; 400 naming the parameter otherwise. */
function nameParam(raw: string, schema: z.ZodType<string>, param: string): string {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    throw new HttpError(
      400,
      GatewayErrorCode.BadInput,
      `path parameter "${param}": ${parsed.error.issues[0]?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

function headerValue(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function mediaType(req: FastifyRequest): MediaType {
  const raw = (headerValue(req, 'content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (raw === MediaType.Json || raw === MediaType.Ndjson) return raw;
  throw new HttpError(
    415,
    GatewayErrorCode.UnsupportedMediaType,
    `Content-Type ${JSON.stringify(raw)}: send application/json (an array) or application/x-ndjson`,
  );
}

function bodyOf(req: FastifyRequest): Buffer {
  return Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
}

/** Parses a small JSON body (empty = `{}`) and validates it; 400 naming the position or field. */
function readJson<S extends z.ZodType>(req: FastifyRequest, schema: S, where: string): z.output<S> {
  const body = bodyOf(req);
  let value: unknown = {};
  if (body.length > 0) {
    const text = bodyText(body, where, '');
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new HttpError(
        400,
        GatewayErrorCode.MalformedJson,
        `${where}: body is not valid JSON at ${jsonErrorPosition(text, toError(err).message)}`,
      );
    }
    checkDepth(text, where, '');
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.length ? issue.path.join('.') : '(root)';
    throw new HttpError(
      400,
      GatewayErrorCode.BadInput,
      `${where}: invalid at "${path}": ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

function toOutgoing(m: WireMessage): OutgoingMessage {
  const out: OutgoingMessage = { body: m.body };
  if (m.id !== undefined) out.id = m.id;
  if (m.headers !== undefined) out.headers = m.headers;
  if (m.priority !== undefined) out.priority = m.priority;
  if (m.delayMs !== undefined) out.delayMs = m.delayMs;
  return out;
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

function stripUndefined<T extends object>(o: T): T {
  const out = {} as T;
  for (const [k, v] of Object.entries(o))
    if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
