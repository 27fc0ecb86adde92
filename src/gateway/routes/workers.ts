/**
 * Workers: `PUT /v1/workers/:id` (a worker that pulls through this gateway pushes its report,
 * and the gateway answers `qtune status` on the broker for it) and `GET /v1/workers` (asks
 * every live worker on the broker's control topic; 501 on a broker without topics).
 */
import type { Consumer } from '../../broker/contract.js';
import { consumerNameSchema, workerReportSchema } from '../../protocol/gateway-wire.js';
import { printable } from '../../protocol/names.js';
import type { WorkerReport } from '../../protocol/worker-report.js';
import { gatherWorkerReports, serveStatusRequests } from '../../worker/control.js';
import { ANY_ROLE } from '../access.js';
import { Role } from '../auth.js';
import type { GatewayRoutes } from '../context.js';
import { GatewayErrorCode, HttpError } from '../errors.js';
import { nameParam, readJson } from '../request.js';

/** Wait for worker reports on `GET /v1/workers` unless `?waitMs=` says (ms). */
const WORKERS_WAIT_MS = 500;
/** A report pushed by a gateway worker counts this long, in ms (workers push every 5 s). */
const WORKER_REPORT_TTL_MS = 15_000;

export const workerRoutes: GatewayRoutes = async (api, { ctx }) => {
  const { broker } = ctx;
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
  api.addHook('onClose', async () => {
    await answering?.then((c) => c.cancel()).catch(() => undefined);
  });

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
      pushedReports.set(`${ctx.principal(req).name}/${id}`, {
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
      ctx.admission.brokerUp();
      return { workers: await gatherWorkerReports(broker, waitMs) };
    },
  );
};
