/**
 * `GET /metrics`: the gateway's Prometheus metrics (src/gateway/metrics.ts) in the text
 * exposition format, for a token of any role (Prometheus sends it as a bearer token), or for
 * anyone with `--no-auth` on loopback.
 */
import { ANY_ROLE } from '../access.js';
import type { GatewayRoutes } from '../context.js';

export const metricsRoutes: GatewayRoutes = async (api, { ctx }) => {
  const { metrics } = ctx;
  api.get('/metrics', { config: { roles: ANY_ROLE } }, async (_req, reply) => {
    const text = await metrics.scrape();
    return reply.type(metrics.registry.contentType).send(text);
  });
};
