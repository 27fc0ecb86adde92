/**
 * qtune messages as NATS messages: the body as is; the id in `Qtune-Id`, a de-duplication id in
 * `Nats-Msg-Id`, the typed headers as one JSON header, and qtune's bookkeeping for copies
 * (deliveries before, not-before time, first publish time).
 */
import type { MsgHdrs } from '@nats-io/transport-node';
import { headers as natsHeaders } from '@nats-io/transport-node';
import type { Headers } from '../../protocol/envelope.js';

/**
 * JetStream's de-duplication id: one per publish (a fresh one for a new message, one derived
 * from the message's place in its stream for a copy), so that a publish retried after a lost
 * ack is stored once, while a deliberate re-publish of the same qtune id (a dead letter
 * requeued) is a new message.
 */
export const MSG_ID = 'Nats-Msg-Id';
/** The qtune id of a message. */
export const ID_HEADER = 'Qtune-Id';
/** The message's qtune headers, as JSON. */
export const HEADERS_HEADER = 'Qtune-Headers';
/** Deliveries a copy's message had before it was copied. */
export const DELIVERED_HEADER = 'Qtune-Delivered';
/** Epoch ms before which a delayed copy must not go back to its queue. */
export const NOT_BEFORE_HEADER = 'Qtune-Not-Before';
/** Epoch ms of the message's first publish (the base of its TTL). */
export const PUBLISHED_HEADER = 'Qtune-Published';
/** The error of the latest nack, in the qtune headers (as on AMQP). */
export const LAST_ERROR = 'x-qtune-last-error';
/** The topic of a message published with publishTopic, in the qtune headers (as on AMQP). */
export const TOPIC_HEADER = 'x-qtune-topic';
/** Bookkeeping of a copy of a message. */
export interface CopyInfo {
  delivered?: number;
  notBefore?: number;
  publishedAt?: number;
}

/** The NATS headers of a message with qtune id `id` and de-duplication id `msgId`. */
export function encodeHeaders(
  id: string,
  msgId: string,
  headers: Headers | undefined,
  copy: CopyInfo = {},
): MsgHdrs {
  const h = natsHeaders();
  h.set(ID_HEADER, id);
  h.set(MSG_ID, msgId);
  if (headers !== undefined && Object.keys(headers).length > 0) {
    h.set(HEADERS_HEADER, JSON.stringify(headers));
  }
  if (copy.delivered !== undefined && copy.delivered > 0) {
    h.set(DELIVERED_HEADER, String(copy.delivered));
  }
  if (copy.notBefore !== undefined) h.set(NOT_BEFORE_HEADER, String(copy.notBefore));
  if (copy.publishedAt !== undefined) h.set(PUBLISHED_HEADER, String(copy.publishedAt));
  return h;
}

/** What a received NATS message carries for qtune. */
export interface Decoded {
  id: string | undefined;
  headers: Headers;
  /** Deliveries before this copy (0 for an original). */
  delivered: number;
  notBefore: number | undefined;
  publishedAt: number | undefined;
}

/** Most deliveries a count header may claim; beyond it the header is not believed. */
const MAX_TRUSTED_COUNT = 1_000_000;

/** Decodes the qtune parts of a message's headers; malformed parts are ignored, never thrown. */
export function decodeHeaders(h: MsgHdrs | undefined): Decoded {
  const out: Decoded = {
    id: undefined,
    headers: {},
    delivered: 0,
    notBefore: undefined,
    publishedAt: undefined,
  };
  if (h === undefined) return out;
  const id = h.get(ID_HEADER);
  if (id !== '') out.id = id;
  const json = h.get(HEADERS_HEADER);
  if (json !== '') {
    try {
      const parsed: unknown = JSON.parse(json);
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) {
        for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
          if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) {
            out.headers[k] = v as string | number | boolean | null;
          }
        }
      }
    } catch {
      // A header any publisher can set: not JSON means no qtune headers.
    }
  }
  const delivered = Number(h.get(DELIVERED_HEADER));
  if (Number.isInteger(delivered) && delivered > 0 && delivered <= MAX_TRUSTED_COUNT) {
    out.delivered = delivered;
  }
  const notBefore = Number(h.get(NOT_BEFORE_HEADER) || NaN);
  if (Number.isFinite(notBefore)) out.notBefore = notBefore;
  const publishedAt = Number(h.get(PUBLISHED_HEADER) || NaN);
  if (Number.isFinite(publishedAt)) out.publishedAt = publishedAt;
  return out;
}

/** What JetStream says about a delivery in its ack subject. */
export interface AckInfo {
  stream: string;
  consumer: string;
  /** Times the consumer delivered this message, this delivery included. */
  deliveryCount: number;
  streamSeq: number;
  /** Epoch ms the message was stored. */
  timestampMs: number;
}

/**
 * Parses an ack subject: `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>`
 * (nats-server 2.9), or the form with domain and account hash tokens after `$JS.ACK`.
 */
export function parseAckSubject(subject: string | undefined): AckInfo | undefined {
  if (subject === undefined || !subject.startsWith('$JS.ACK.')) return undefined;
  const t = subject.split('.');
  let at: number;
  if (t.length === 9) at = 2;
  else if (t.length >= 11) at = 4;
  else return undefined;
  const deliveryCount = Number(t[at + 2]);
  const streamSeq = Number(t[at + 3]);
  const ts = Number(t[at + 5]);
  if (!Number.isInteger(deliveryCount) || !Number.isInteger(streamSeq)) return undefined;
  return {
    stream: t[at]!,
    consumer: t[at + 1]!,
    deliveryCount,
    streamSeq,
    timestampMs: Number.isFinite(ts) ? Math.floor(ts / 1e6) : Date.now(),
  };
}
