/**
 * Jobs: `GET /v1/jobs/:name` (status, from the gateway's provider), `POST /v1/jobs/:name/items`
 * (adds items as `qtune job submit` does; 501 without a store) and `POST /v1/jobs/:name/cancel`
 * (admin: jobs record no owner, so a producer cannot be told apart from another).
 */
import { cancelJobTasks } from '../../job/cancel.js';
import { jobNameSchema } from '../../protocol/gateway-wire.js';
import { ANY_ROLE } from '../access.js';
import { Role } from '../auth.js';
import { findStatus, type GatewayRoutes } from '../context.js';
import { GatewayErrorCode, HttpError } from '../errors.js';
import { MediaType, itemName, parseJsonArray, parseNdjson } from '../bulk-body.js';
import { bodyOf, mediaType, nameParam } from '../request.js';

export const jobRoutes: GatewayRoutes = async (api, { ctx }) => {
  api.get<{ Params: { name: string } }>(
    '/v1/jobs/:name',
    { config: { roles: ANY_ROLE } },
    async (req) => findStatus(ctx, 'job', req.params.name),
  );

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
      if (!ctx.jobs) {
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
      ctx.admission.brokerUp();
      return ctx.jobs.addItems(name, items, keyParam?.split(','));
    },
  );

  api.post<{ Params: { name: string } }>(
    '/v1/jobs/:name/cancel',
    { config: { roles: [Role.Admin] } },
    async (req) => {
      const name = req.params.name;
      const job = (await ctx.status?.job?.(name)) as { queue?: unknown } | undefined;
      if (job === undefined || typeof job.queue !== 'string') {
        throw new HttpError(404, GatewayErrorCode.NotFound, `job "${name}" does not exist`);
      }
      return cancelJobTasks(ctx.broker, { name, queue: job.queue });
    },
  );
};
