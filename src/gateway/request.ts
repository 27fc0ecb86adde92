/**
 * Reading requests in the gateway's route modules: path parameters, media type, small JSON
 * bodies checked by a wire schema; each refusal is an HttpError naming what was wrong.
 */
import type { FastifyRequest } from 'fastify';
import type { z } from 'zod';
import type { OutgoingMessage } from '../broker/contract.js';
import { queueNameSchema, type WireMessage } from '../protocol/gateway-wire.js';
import { toError } from '../protocol/errors.js';
import { GatewayErrorCode, HttpError } from './errors.js';
import { MediaType, bodyText, checkDepth } from './bulk-body.js';
import { jsonErrorPosition } from './json-position.js';

/** The queue name in the path; 400 when it breaks the name rule. */
export function queueParam(raw: string): string {
  return nameParam(raw, queueNameSchema, 'queue');
}

/** A name from the path, checked by `schema`; 400 naming the parameter otherwise. */
export function nameParam(raw: string, schema: z.ZodType<string>, param: string): string {
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

export function headerValue(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The request's media type: JSON or NDJSON; 415 otherwise. */
export function mediaType(req: FastifyRequest): MediaType {
  const raw = (headerValue(req, 'content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (raw === MediaType.Json || raw === MediaType.Ndjson) return raw;
  throw new HttpError(
    415,
    GatewayErrorCode.UnsupportedMediaType,
    `Content-Type ${JSON.stringify(raw)}: send application/json (an array) or application/x-ndjson`,
  );
}

/** The raw body (bodies stay bytes: each endpoint parses its own). */
export function bodyOf(req: FastifyRequest): Buffer {
  return Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
}

/** Parses a small JSON body (empty = `{}`) and validates it; 400 naming the position or field. */
export function readJson<S extends z.ZodType>(
  req: FastifyRequest,
  schema: S,
  where: string,
): z.output<S> {
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

/** A message of a request body as the Broker contract takes it. */
export function toOutgoing(m: WireMessage): OutgoingMessage {
  const out: OutgoingMessage = { body: m.body };
  if (m.id !== undefined) out.id = m.id;
  if (m.headers !== undefined) out.headers = m.headers;
  if (m.priority !== undefined) out.priority = m.priority;
  if (m.delayMs !== undefined) out.delayMs = m.delayMs;
  return out;
}

/** `o` without its undefined fields (options objects under exactOptionalPropertyTypes). */
export function stripUndefined<T extends object>(o: T): T {
  const out = {} as T;
  for (const [k, v] of Object.entries(o))
    if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
