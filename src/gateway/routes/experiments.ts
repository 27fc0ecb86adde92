/** Experiments: `GET /v1/experiments/:name`, the status the gateway's provider gives (404 if none). */
import { ANY_ROLE } from '../access.js';
import { findStatus, type GatewayRoutes } from '../context.js';

export const experimentRoutes: GatewayRoutes = async (api, { ctx }) => {
  api.get<{ Params: { name: string } }>(
    '/v1/experiments/:name',
    { config: { roles: ANY_ROLE } },
    async (req) => findStatus(ctx, 'experiment', req.params.name),
  );
};
