/**
 * Bulk bodies (of `POST /v1/queues/:queue/tasks` and `POST /v1/jobs/:name/items`): parses a JSON
 * array, or NDJSON with one payload per line, and turns the payloads into task messages. The
 * whole body is checked before anything is published.
 */
import type { EnvelopeMessage } from '../broker/envelope-message.js';
import { createTaskEnvelope } from '../patterns/work-queue.js';
import { envelopeSchema } from '../protocol/envelope.js';
import { GatewayErrorCode, HttpError } from './errors.js';
import {
  MAX_JSON_DEPTH,
  findJsonError,
  invalidUtf8At,
  jsonErrorPosition,
  jsonTooDeep,
  positionOf,
} from './json-position.js';

/** Media types of the ingest endpoint. */
export const MediaType = {
  Json: 'application/json',
  Ndjson: 'application/x-ndjson',
} as const;
export type MediaType = (typeof MediaType)[keyof typeof MediaType];

/** Payloads read from a body, with where each came from for error messages. */
export interface ParsedBody {
  payloads: unknown[];
  /** 1-based line of each payload (NDJSON only). */
  lines?: number[];
}

function malformed(message: string): HttpError {
  return new HttpError(400, GatewayErrorCode.MalformedJson, message);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const NOTHING_PUBLISHED = '; nothing was published';

/**
 * Text of a UTF-8 body without a leading byte order mark; a body that is not valid UTF-8 is
 * MALFORMED_JSON (400) naming the first bad byte.
 */
export function bodyText(body: Buffer, where: string, note = NOTHING_PUBLISHED): string {
  try {
    return utf8.decode(body);
  } catch {
    const at = invalidUtf8At(body);
    throw malformed(`${where}: body is not valid UTF-8${at >= 0 ? ` at byte ${at}` : ''}${note}`);
  }
}

/** 400 when valid JSON `text` nests deeper than MAX_JSON_DEPTH. */
export function checkDepth(text: string, where: string, note = NOTHING_PUBLISHED): void {
  const at = jsonTooDeep(text);
  if (at >= 0) {
    throw new HttpError(
      400,
      GatewayErrorCode.BadInput,
      `${where}: body nests arrays and objects deeper than ${MAX_JSON_DEPTH} levels at ${positionOf(text, at)}${note}`,
    );
  }
}

/** Reads a JSON array of payloads; a syntax error names its byte offset, line and column. */
export function parseJsonArray(body: Buffer, where: string): ParsedBody {
  const source = bodyText(body, where);
  let value: unknown;
  try {
    value = JSON.parse(source);
  } catch (err) {
    const detail = jsonErrorPosition(source, (err as Error).message);
    throw malformed(`${where}: body is not valid JSON at ${detail}; nothing was published`);
  }
  checkDepth(source, where);
  if (!Array.isArray(value)) {
    throw new HttpError(
      400,
      GatewayErrorCode.BadInput,
      `${where}: body must be a JSON array of payloads, got ${value === null ? 'null' : typeof value}; nothing was published`,
    );
  }
  return { payloads: value };
}

/**
 * Reads NDJSON: one payload per line, blank lines skipped, `\r\n` accepted. A syntax error names
 * its line and column. The body is decoded once; each line is a slice of that one string.
 */
export function parseNdjson(body: Buffer, where: string): ParsedBody {
  const source = bodyText(body, where);
  const payloads: unknown[] = [];
  const lines: number[] = [];
  let start = 0;
  let line = 0;
  while (start <= source.length) {
    let end = source.indexOf('\n', start);
    if (end < 0) end = source.length;
    line++;
    let stop = end;
    if (stop > start && source.charCodeAt(stop - 1) === 0x0d) stop--;
    const slice = source.slice(start, stop);
    if (slice.trim() !== '') {
      try {
        payloads.push(JSON.parse(slice));
      } catch (err) {
        const found = findJsonError(slice);
        const detail = found
          ? `column ${found.index + 1}: ${found.reason}`
          : (err as Error).message;
        throw malformed(
          `${where}: line ${line} is not valid JSON at ${detail}; nothing was published`,
        );
      }
      lines.push(line);
    }
    start = end + 1;
  }
  checkDepth(source, where);
  return { payloads, lines };
}

/** Where payload `index` came from: `item 3` or `line 7`. */
export function itemName(parsed: ParsedBody, index: number): string {
  return parsed.lines ? `line ${parsed.lines[index]}` : `item ${index}`;
}

/**
 * The idempotency key of each payload from its field `field`: a string, number or boolean.
 * Throws a 400 naming the first payload without one.
 */
export function keysFrom(parsed: ParsedBody, field: string, where: string): string[] {
  const keys = new Array<string>(parsed.payloads.length);
  for (let i = 0; i < parsed.payloads.length; i++) {
    const p = parsed.payloads[i];
    const v =
      p !== null && typeof p === 'object' && !Array.isArray(p)
        ? (p as Record<string, unknown>)[field]
        : undefined;
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw new HttpError(
        400,
        GatewayErrorCode.BadInput,
        `${where}: ${itemName(parsed, i)}: key field "${field}" is missing or not a string, number or boolean; nothing was published`,
      );
    }
    keys[i] = String(v);
  }
  return keys;
}

/**
 * One task message per payload, results directed to `replyTo`; `ids[i]` (when given) becomes the
 * envelope and message id of payload i. Each envelope is checked with the schema workers decode
 * with, so a task no worker could run is refused here (400 naming the item and the field)
 * instead of ending as an INVALID_ENVELOPE dead letter.
 */
export function taskMessages(
  parsed: ParsedBody,
  replyTo: string,
  keys: readonly string[] | undefined,
  ids: readonly string[] | undefined,
  where: string,
): EnvelopeMessage[] {
  const payloads = parsed.payloads;
  const out = new Array<EnvelopeMessage>(payloads.length);
  for (let i = 0; i < payloads.length; i++) {
    const env = createTaskEnvelope(
      {
        payload: payloads[i],
        ...(keys !== undefined && { key: keys[i]! }),
        ...(ids !== undefined && { id: ids[i]! }),
      },
      replyTo,
    );
    const checked = envelopeSchema.safeParse(env);
    if (!checked.success) {
      const issue = checked.error.issues[0];
      const field = issue?.path.length ? issue.path.join('.') : '(envelope)';
      throw new HttpError(
        400,
        GatewayErrorCode.BadInput,
        `${where}: ${itemName(parsed, i)}: envelope field "${field}": ${issue?.message ?? 'invalid'}; nothing was published`,
      );
    }
    out[i] = { id: env.id, body: JSON.stringify(env), envelope: env };
  }
  return out;
}
