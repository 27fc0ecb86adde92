/**
 * The gateway itself: `GET /healthz` (no token; 503 while the broker is away),
 * `GET /openapi.json` (no token) and `GET /v1/token` (who the caller's token belongs to).
 */
import { ANY_ROLE } from '../access.js';
import type { GatewayRoutes } from '../context.js';
import { openApiDocument } from '../openapi.js';

export const serviceRoutes: GatewayRoutes = async (api, { ctx }) => {
  api.get('/healthz', { config: { public: true, rateLimit: false } }, async (_req, reply) => {
    const status = ctx.admission.brokerStatus;
    if (status !== 'connected') void reply.code(503).header('retry-after', '1');
    return { status: status === 'connected' ? 'ok' : 'unavailable', broker: status };
  });

  let document: object | undefined;
  api.get('/openapi.json', { config: { public: true, rateLimit: false } }, async () => {
    document ??= openApiDocument();
    return document;
  });

  api.get('/v1/token', { config: { roles: ANY_ROLE } }, async (req) => {
    const p = ctx.principal(req);
    const { purge, pause } = ctx.broker.capabilities;
    return { name: p.name, role: p.role, broker: { purge, pause } };
  });
};
