/**
 * The typed context that the gateway's route modules share: the broker, the lease hub, the
 * job and status providers, admission control and the caller of each request. Built once per
 * gateway by {@link createContext}; each route module gets it as its plugin option `ctx`.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Broker } from '../broker/contract.js';
import { Admission } from './admission.js';
import { GatewayMetrics, type MetricsSources } from './metrics.js';
import type { DashboardOptions } from './routes/dashboard.js';
import { ANONYMOUS, type AuthConfig, type Principal } from './auth.js';
import { GatewayErrorCode, HttpError } from './errors.js';
import { PullHub, type HubLogger } from './pull.js';

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
  /** Jobs and experiments for `GET /metrics`, read on each scrape (default: queues only). */
  metrics?: MetricsSources;
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

/** The limits of one gateway, defaults applied. */
export interface GatewayLimits {
  /** Largest request body in bytes. */
  readonly bodyLimit: number;
  /** Requests per second per token, unless its entry sets another. */
  readonly rateLimit: number;
  /** Requests per second per client IP address. */
  readonly ipRateLimit: number;
}

/** What every route module of one gateway shares. */
export interface GatewayContext {
  readonly broker: Broker;
  readonly auth: AuthConfig;
  readonly limits: GatewayLimits;
  /** Deliveries held for pull-consuming clients, and their leases. */
  readonly hub: PullHub;
  /** Broker status and messages waiting for confirmation. */
  readonly admission: Admission;
  /** Queues declared through this gateway. */
  readonly queues: DeclaredQueues;
  /** Job and experiment lookups, when the gateway has them. */
  readonly status: GatewayStatusProviders | undefined;
  /** Adds job items, when the gateway has a store. */
  readonly jobs: GatewayJobs | undefined;
  /** The gateway's Prometheus metrics (`GET /metrics`). */
  readonly metrics: GatewayMetrics;
  /** The authenticated caller of each request (set by the access hook). */
  readonly principals: WeakMap<FastifyRequest, Principal>;
  /** The caller of `req`: anonymous (admin) when the route needs no token. */
  principal(req: FastifyRequest): Principal;
}

/** A route module: a fastify plugin that gets the gateway's context as its option `ctx`. */
export type GatewayRoutes = FastifyPluginAsync<{ ctx: GatewayContext }>;

/** The limits `options` set, defaults applied. */
export function gatewayLimits(options: GatewayOptions): GatewayLimits {
  const rateLimit = options.rateLimit ?? GATEWAY_DEFAULTS.rateLimit;
  return {
    bodyLimit: options.bodyLimit ?? GATEWAY_DEFAULTS.bodyLimit,
    rateLimit,
    ipRateLimit: options.ipRateLimit ?? rateLimit * 10,
  };
}

/** Builds the context of one gateway; `log` is where the lease hub writes (the app's logger). */
export function createContext(
  options: GatewayOptions,
  limits: GatewayLimits,
  log: HubLogger,
): GatewayContext {
  const broker = options.broker;
  const principals = new WeakMap<FastifyRequest, Principal>();
  const hub = new PullHub({
    broker,
    prefetch: options.pullPrefetch ?? GATEWAY_DEFAULTS.pullPrefetch,
    ...(options.pullIdleMs !== undefined && { idleMs: options.pullIdleMs }),
    logger: log,
  });
  return {
    broker,
    auth: options.auth,
    limits,
    hub,
    admission: new Admission(
      broker,
      options.maxPendingPublishes ?? GATEWAY_DEFAULTS.maxPendingPublishes,
    ),
    queues: new DeclaredQueues(broker),
    status: options.status,
    jobs: options.jobs,
    metrics: new GatewayMetrics({
      broker,
      hub,
      ...(options.metrics !== undefined && { sources: options.metrics }),
    }),
    principals,
    principal: (req) => principals.get(req) ?? ANONYMOUS,
  };
}

/**
 * The queues this gateway has declared on the broker (so ingest declares each once), and which
 * token owns each temporary queue: the broker sees one handle (this gateway) for every token.
 */
export class DeclaredQueues {
  readonly #broker: Broker;
  readonly #declared = new Map<string, Promise<void>>();
  /** Temporary queues declared through this gateway → the token that declared (owns) each. */
  readonly #temporary = new Map<string, string>();

  constructor(broker: Broker) {
    this.#broker = broker;
  }

  /** Declares `queue` with default options unless this gateway declared it before. */
  async ensure(queue: string): Promise<void> {
    let p = this.#declared.get(queue);
    if (!p) {
      p = this.#broker.declareQueue(queue);
      this.#declared.set(queue, p);
      p.catch(() => this.#declared.delete(queue));
    }
    await p;
  }

  /** Records that `queue` was declared; `owner`: the token that now owns it as temporary. */
  declared(queue: string, owner?: string): void {
    if (owner !== undefined) this.#temporary.set(queue, owner);
    this.#declared.set(queue, Promise.resolve());
  }

  /** Forgets `queue` (it was deleted). */
  deleted(queue: string): void {
    this.#temporary.delete(queue);
    this.#declared.delete(queue);
  }

  /** The token that declared `queue` as temporary, if one did. */
  ownerOf(queue: string): string | undefined {
    return this.#temporary.get(queue);
  }
}

/** Looks up a job or experiment; 404 when there is no provider or it knows no such name. */
export async function findStatus(
  ctx: GatewayContext,
  kind: 'job' | 'experiment',
  name: string,
): Promise<unknown> {
  const provider = ctx.status?.[kind];
  const found = provider ? await provider.call(ctx.status, name) : undefined;
  if (found === undefined || found === null) {
    throw new HttpError(404, GatewayErrorCode.NotFound, `no ${kind} named "${name}"`);
  }
  return found;
}
