/**
 * Bulk ingest: turns a request body (a JSON array, or NDJSON with one payload per line) into task
 * messages. The whole body is checked before anything is published.
 */
import type { OutgoingMessage } from '../broker/contract.js';
import { createTaskEnvelope } from '../patterns/work-queue.js';
import { GatewayErrorCode, HttpError } from './errors.js';
import { findJsonError, jsonErrorPosition } from './json-position.js';

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

/** Text of a UTF-8 body without a leading byte order mark. */
function text(body: Buffer): string {
  const s = body.toString('utf8');
  return s.charCodeAt(0) === 0xfeff ? s.slice(1) : s;
}

/** Reads a JSON array of payloads; a syntax error names its byte offset, line and column. */
export function parseJsonArray(body: Buffer, where: string): ParsedBody {
  const source = text(body);
  let value: unknown;
  try {
    value = JSON.parse(source);
  } catch (err) {
    const detail = jsonErrorPosition(source, (err as Error).message);
    throw malformed(`${where}: body is not valid JSON at ${detail}; nothing was published`);
  }
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
  const source = text(body);
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
 * envelope and message id of payload i.
 */
export function taskMessages(
  payloads: readonly unknown[],
  replyTo: string,
  keys: readonly string[] | undefined,
  ids: readonly string[] | undefined,
): OutgoingMessage[] {
  const out = new Array<OutgoingMessage>(payloads.length);
  for (let i = 0; i < payloads.length; i++) {
    const env = createTaskEnvelope(
      {
        payload: payloads[i],
        ...(keys !== undefined && { key: keys[i]! }),
        ...(ids !== undefined && { id: ids[i]! }),
      },
      replyTo,
    );
    out[i] = { id: env.id, body: JSON.stringify(env), envelope: env };
  }
  return out;
}
