import type { Options } from 'amqplib';
import type { OutgoingMessage } from '../contract.js';
import { envelopeRoutingOf } from '../envelope-message.js';

/** The AMQP properties of an outgoing message: id, persistence, and the envelope's routing fields. */
export function publishOptions(
  m: OutgoingMessage,
  id: string,
  priorities: number,
): Options.Publish {
  const options: Options.Publish = {
    messageId: id,
    // Unroutable messages come back and are refused; topic publishes turn this off.
    mandatory: true,
    persistent: true,
    timestamp: Math.floor(Date.now() / 1000),
  };
  if (m.headers !== undefined && Object.keys(m.headers).length > 0)
    options.headers = { ...m.headers };
  const envelope = envelopeRoutingOf(m) ?? envelopeFields(toBuffer(m.body));
  if (envelope) {
    options.contentType = 'application/json';
    if (envelope.correlationId !== undefined) options.correlationId = envelope.correlationId;
    if (envelope.replyTo !== undefined) options.replyTo = envelope.replyTo;
    if (envelope.type !== undefined) options.type = envelope.type;
  }
  if (m.priority !== undefined && m.priority > 0) {
    options.priority = Math.max(0, Math.min(priorities - 1, 255, Math.floor(m.priority)));
  }
  return options;
}

/** correlationId, replyTo and type of a JSON envelope body, for the AMQP properties. */
export function envelopeFields(
  body: Buffer,
): { correlationId?: string; replyTo?: string; type?: string } | undefined {
  if (body.length === 0 || (body[0] !== 0x7b && body[0] !== 0x5b && body[0] !== 0x22)) {
    return undefined;
  }
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return {};
  const v = value as Record<string, unknown>;
  if (!('qtune' in v)) return {};
  const pick = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const out: { correlationId?: string; replyTo?: string; type?: string } = {};
  const c = pick('correlationId');
  const r = pick('replyTo');
  const t = pick('type');
  if (c !== undefined) out.correlationId = c;
  if (r !== undefined) out.replyTo = r;
  if (t !== undefined) out.type = t;
  return out;
}

export function toBuffer(body: Buffer | string): Buffer {
  return typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
}
