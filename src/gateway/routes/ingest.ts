/**
 * Publishing: `POST /v1/queues/:queue/tasks` (bulk ingest of a JSON array or NDJSON, one task
 * per item, idempotent with an `Idempotency-Key`; a failure part way answers which items were
 * stored) and `POST /v1/queues/:queue/messages` (raw publish of wire messages). Both count
 * their messages against the gateway's limit of messages waiting for broker confirmation.
 */
import type { Broker, OutgoingMessage } from '../../broker/contract.js';
import { resultQueueOf } from '../../patterns/work-queue.js';
import { publishRequestSchema, type IngestResponse } from '../../protocol/gateway-wire.js';
import { toError } from '../../protocol/errors.js';
import { Role } from '../auth.js';
import type { GatewayRoutes } from '../context.js';
import { asHttpError } from '../error-handler.js';
import { GatewayErrorCode, HttpError } from '../errors.js';
import { IdempotencyCache, deterministicId, requestFingerprint } from '../idempotency.js';
import {
  MediaType,
  keysFrom,
  parseJsonArray,
  parseNdjson,
  taskMessages,
  type ParsedBody,
} from '../bulk-body.js';
import { bodyOf, headerValue, mediaType, queueParam, readJson, toOutgoing } from '../request.js';

/** Messages per broker publish call on the ingest path. */
const PUBLISH_BATCH = 1_000;
/** Publish calls of one request in flight at once (in order). */
const PUBLISH_WINDOW = 4;

export const ingestRoutes: GatewayRoutes = async (api, { ctx }) => {
  const { broker, admission } = ctx;
  const idempotency = new IdempotencyCache();

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
      admission.brokerUp();
      admission.checkRoom();
      const p = ctx.principal(req);
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
        const replayed = (stored.body as Partial<IngestResponse>).accepted;
        ctx.metrics.payloads('replayed', typeof replayed === 'number' ? replayed : 0);
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
        const done = admission.admit(todo.length);
        try {
          await ctx.queues.ensure(queue);
          await ctx.queues.ensure(replyTo);
          await publishInBatches(broker, queue, todo);
          ctx.metrics.payloads('accepted', todo.length);
        } catch (err) {
          const storedNow = err instanceof PartialPublish ? err.stored.filter(Boolean).length : 0;
          ctx.metrics.payloads('accepted', storedNow);
          ctx.metrics.payloads('refused', todo.length - storedNow);
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
      admission.brokerUp();
      const done = admission.admit(messages.length);
      try {
        return { ids: await broker.publish(queue, messages.map(toOutgoing)) };
      } finally {
        done();
      }
    },
  );
};

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
