/**
 * The HTTP gateway: a fastify app composed of cross-cutting hooks (logging, error answers,
 * access: auth, roles and rate limits) on the root instance and route modules (routes/*.ts),
 * each a fastify plugin that owns its paths and gets the shared {@link GatewayContext}.
 *
 * Order matters: fastify copies the root's hooks and handlers into a plugin when the plugin
 * loads, so every hook is added before the first `register`. A new route module is one file
 * under routes/ and one `register` line below.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { checkAccess } from './access.js';
import { createContext, gatewayLimits, type GatewayOptions } from './context.js';
import { handleErrors, refusalOptions } from './error-handler.js';
import { MediaType } from './bulk-body.js';
import { gatewayLogger, logRequests } from './logging.js';
import { experimentRoutes } from './routes/experiments.js';
import { ingestRoutes } from './routes/ingest.js';
import { jobRoutes } from './routes/jobs.js';
import { dashboardRoutes } from './routes/dashboard.js';
import { dashboardExperimentRoutes } from './routes/dashboard-experiment.js';
import { leaseRoutes } from './routes/leases.js';
import { metricsRoutes } from './routes/metrics.js';
import { queueRoutes } from './routes/queues.js';
import { serviceRoutes } from './routes/service.js';
import { workerRoutes } from './routes/workers.js';

export { GATEWAY_DEFAULTS } from './context.js';
export type {
  GatewayJobs,
  GatewayOptions,
  GatewayStatusProviders,
  JobItemsAnswer,
} from './context.js';

/**
 * Creates the HTTP gateway (a fastify app, not yet listening): bulk ingest, raw publish, queue
 * declaration and statistics, pull-consume with leases for workers that cannot reach the broker,
 * status lookups, bearer-token auth with roles and per-token rate limits. Closing the app ends
 * waiting polls and hands back every delivery it holds; it does not close the broker.
 */
export function createGateway(options: GatewayOptions): FastifyInstance {
  const logger = gatewayLogger(options.logger);
  const limits = gatewayLimits(options);
  const app = Fastify({
    ...(logger ? { loggerInstance: logger as FastifyBaseLogger } : { logger: false }),
    bodyLimit: limits.bodyLimit,
    routerOptions: { maxParamLength: 512 },
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    ...refusalOptions(limits.bodyLimit),
  });
  const ctx = createContext(options, limits, app.log);

  // Bodies stay bytes: each endpoint parses its own JSON once, with positions in its errors.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    [MediaType.Json, MediaType.Ndjson],
    { parseAs: 'buffer' },
    (_req, body, done) => done(null, body),
  );

  handleErrors(app, limits.bodyLimit);
  logRequests(app, ctx);

  // Closing: answers still being sent close their connection, so the server can finish.
  let closing = false;
  app.addHook('onSend', (_req, reply, payload, done) => {
    if (closing) void reply.header('connection', 'close');
    done(null, payload);
  });
  app.addHook('preClose', (done) => {
    closing = true;
    ctx.hub.endPolls();
    done();
  });
  app.addHook('onClose', async () => {
    ctx.admission.close();
    await ctx.hub.close();
  });

  checkAccess(app, ctx);
  ctx.metrics.observe(app);

  void app.register(serviceRoutes, { ctx });
  void app.register(ingestRoutes, { ctx });
  void app.register(queueRoutes, { ctx });
  void app.register(leaseRoutes, { ctx });
  void app.register(jobRoutes, { ctx });
  void app.register(experimentRoutes, { ctx });
  void app.register(workerRoutes, { ctx });
  void app.register(metricsRoutes, { ctx });
  void app.register(dashboardRoutes, { broker: ctx.broker, ...options.dashboard });
  void app.register(dashboardExperimentRoutes, { broker: ctx.broker, ...options.dashboard });
  return app;
}
