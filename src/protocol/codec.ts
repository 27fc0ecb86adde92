import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { DecodeError, ErrorCode } from './errors.js';
import {
  describeEnvelopeIssue,
  envelopeSchema,
  MessageType,
  PROTOCOL_VERSION,
  type Envelope,
} from './envelope.js';

/** Encodes an envelope as UTF-8 JSON. */
export function encode(envelope: Envelope): Buffer {
  return Buffer.from(JSON.stringify(envelope), 'utf8');
}

/** What the transport knows about a message when the body carries no envelope. */
export interface DecodeContext {
  /** Where the message came from, used in error messages (e.g. `queue "trials"`). */
  source?: string;
  /** Transport message id (e.g. AMQP message-id, embedded row id). */
  messageId?: string;
  /** 1-based delivery count from the broker. */
  attempt?: number;
}

/**
 * Decodes a message body into an envelope. A JSON object with a `qtune` field must be a valid
 * envelope of a version this code supports; any other JSON value is taken as the payload of a
 * task (a "bare" message). Throws {@link DecodeError} naming the source and what was wrong.
 */
export function decode(body: Buffer | string, ctx: DecodeContext = {}): Envelope {
  const where = ctx.source ?? 'message';
  // toString would replace bad bytes with U+FFFD and hand on a payload the sender never sent.
  if (typeof body !== 'string' && !isUtf8(body)) {
    throw new DecodeError(
      ErrorCode.MalformedJson,
      `${where}: body is not valid UTF-8 (first bad byte at offset ${firstBadUtf8Byte(body)})`,
    );
  }
  const text = typeof body === 'string' ? body : body.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new DecodeError(ErrorCode.MalformedJson, `${where}: body is not valid JSON (${detail})`, {
      cause: err,
    });
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && 'qtune' in value) {
    const version = (value as { qtune: unknown }).qtune;
    if (typeof version === 'number' && Number.isInteger(version) && version > PROTOCOL_VERSION) {
      throw new DecodeError(
        ErrorCode.UnsupportedVersion,
        `${where}: envelope version ${version} is newer than the supported version ${PROTOCOL_VERSION}`,
      );
    }
    const parsed = envelopeSchema.safeParse(value);
    if (!parsed.success) {
      throw new DecodeError(
        ErrorCode.InvalidEnvelope,
        `${where}: ${describeEnvelopeIssue(parsed.error, value)}`,
      );
    }
    const env = parsed.data as Envelope;
    if (env.payload === undefined) env.payload = null;
    if (ctx.attempt !== undefined) env.attempt = ctx.attempt;
    return env;
  }
  const env: Envelope = {
    qtune: PROTOCOL_VERSION,
    id: ctx.messageId ?? randomUUID(),
    type: MessageType.Task,
    payload: value,
  };
  if (ctx.attempt !== undefined) env.attempt = ctx.attempt;
  return env;
}

/** Offset of the first byte of `bytes` that does not start or continue a valid UTF-8 sequence. */
function firstBadUtf8Byte(bytes: Buffer): number {
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i]!;
    const len =
      b < 0x80
        ? 1
        : b >= 0xc2 && b < 0xe0
          ? 2
          : b >= 0xe0 && b < 0xf0
            ? 3
            : b >= 0xf0 && b < 0xf5
              ? 4
              : 0;
    if (len === 0 || i + len > bytes.length || !isUtf8(bytes.subarray(i, i + len))) return i;
    i += len;
  }
  return bytes.length;
}
