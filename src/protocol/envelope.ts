import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { InputError } from './errors.js';
import { jsonDepthProblem, MAX_JSON_DEPTH } from './json-depth.js';
import { MAX_BROKER_QUEUE_NAME_BYTES, nameProblem } from './names.js';

/** The protocol major version this code writes and reads. */
export const PROTOCOL_VERSION = 1;

export const MessageType = {
  Task: 'task',
  Result: 'result',
  Event: 'event',
  Request: 'request',
  Reply: 'reply',
  Control: 'control',
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

const headerValue = z.union([z.string(), z.number(), z.boolean(), z.null()]);

/**
 * Limits of an envelope's fields, the one source for every check (worker, `qtune publish`, the
 * patterns API, the gateway) and for docs/protocol.md. Lengths of `id`, `correlationId` and
 * `key` are in UTF-16 code units (JavaScript string length); names are in UTF-8 bytes.
 */
export const ENVELOPE_LIMITS = {
  /** Longest message id. */
  idLength: 256,
  /** Longest task name, in UTF-8 bytes. */
  taskBytes: 256,
  /** Longest correlation id. */
  correlationIdLength: 256,
  /**
   * Longest reply-to queue name, in UTF-8 bytes: the broker's limit, since a reply-to is often
   * derived from a user's queue (`NAME.results`).
   */
  replyToBytes: MAX_BROKER_QUEUE_NAME_BYTES,
  /** Longest reply-to address of RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to.…`), in bytes: AMQP's limit. */
  directReplyToBytes: 255,
  /** Longest idempotency key. */
  keyLength: 1024,
} as const;

/** A name field: the name check of src/protocol/names.ts, as a zod refinement. */
function nameField(kind: string, rules: (name: string) => Parameters<typeof nameProblem>[2]) {
  return z.string().superRefine((name, ctx) => {
    const problem = nameProblem(kind, name, rules(name));
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
  });
}

/** Schema of a v1 envelope as it appears on the wire. Unknown fields are ignored. */
export const envelopeSchema = z.object({
  qtune: z.number().int().positive(),
  id: z.string().min(1).max(ENVELOPE_LIMITS.idLength),
  type: z.enum(['task', 'result', 'event', 'request', 'reply', 'control']),
  // Task names are labels, never queues: wildcards and `amq.` are fine, control characters not.
  task: nameField('task', () => ({
    maxBytes: ENVELOPE_LIMITS.taskBytes,
    allowAmq: true,
    allowWildcards: true,
  })).optional(),
  payload: z.unknown().optional(),
  correlationId: z.string().max(ENVELOPE_LIMITS.correlationIdLength).optional(),
  replyTo: nameField('replyTo', (name) => ({
    allowAmq: true,
    maxBytes: name.startsWith('amq.')
      ? ENVELOPE_LIMITS.directReplyToBytes
      : ENVELOPE_LIMITS.replyToBytes,
  })).optional(),
  key: z.string().max(ENVELOPE_LIMITS.keyLength).optional(),
  attempt: z.number().int().nonnegative().optional(),
  createdAt: z.number().int().nonnegative().optional(),
  deadline: z.number().int().nonnegative().optional(),
  headers: z.record(z.string(), headerValue).optional(),
});

export type HeaderValue = z.infer<typeof headerValue>;
export type Headers = Record<string, HeaderValue>;

/** A decoded v1 envelope. `attempt` is 1 on the first delivery. */
export interface Envelope<P = unknown> {
  qtune: number;
  id: string;
  type: MessageType;
  task?: string;
  payload: P;
  correlationId?: string;
  replyTo?: string;
  key?: string;
  attempt?: number;
  createdAt?: number;
  deadline?: number;
  headers?: Headers;
}

export type EnvelopeInit<P = unknown> = Omit<Envelope<P>, 'qtune' | 'id' | 'createdAt'> &
  Partial<Pick<Envelope<P>, 'id' | 'createdAt'>>;

/** Builds an envelope with a fresh id, the current version and creation time. */
export function createEnvelope<P>(init: EnvelopeInit<P>): Envelope<P> {
  const env: Envelope<P> = {
    qtune: PROTOCOL_VERSION,
    id: init.id ?? randomUUID(),
    type: init.type,
    payload: init.payload,
    createdAt: init.createdAt ?? Date.now(),
  };
  if (init.task !== undefined) env.task = init.task;
  if (init.correlationId !== undefined) env.correlationId = init.correlationId;
  if (init.replyTo !== undefined) env.replyTo = init.replyTo;
  if (init.key !== undefined) env.key = init.key;
  if (init.attempt !== undefined) env.attempt = init.attempt;
  if (init.deadline !== undefined) env.deadline = init.deadline;
  if (init.headers !== undefined) env.headers = init.headers;
  return env;
}

/**
 * Why `value` is not a valid envelope, naming the field and what was seen
 * (`invalid envelope at "key": Too big: expected string to have <=1024 characters (got 2000)`),
 * or undefined when it is valid; also when it nests deeper than MAX_JSON_DEPTH. The worker's
 * decode and every publisher use this one check.
 */
export function envelopeProblem(value: unknown): string | undefined {
  // First: a value nested too deep would overflow the stack of the schema check itself.
  // Headers are flat, so only the payload can nest; the envelope's own object is one level.
  if (value !== null && typeof value === 'object' && 'payload' in value) {
    const tooDeep = jsonDepthProblem(value.payload, MAX_JSON_DEPTH - 1);
    if (tooDeep !== undefined) {
      return `invalid envelope at "payload": ${tooDeep}; with the envelope's own object that is over MAX_JSON_DEPTH = ${MAX_JSON_DEPTH}`;
    }
  }
  const parsed = envelopeSchema.safeParse(value);
  return parsed.success ? undefined : describeEnvelopeIssue(parsed.error, value);
}

/** The first issue of a failed envelope parse, as {@link envelopeProblem} words it. */
export function describeEnvelopeIssue(error: z.ZodError, value: unknown): string {
  const issue = error.issues[0];
  const path = issue?.path.length ? issue.path.join('.') : '(root)';
  let seen = '';
  if (issue?.code === 'too_big' && issue.origin === 'string') {
    const field = issue.path.reduce<unknown>(
      (v, k) => (v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : v),
      value,
    );
    if (typeof field === 'string') seen = ` (got ${field.length})`;
  }
  return `invalid envelope at "${path}": ${issue?.message ?? 'invalid'}${seen}`;
}

/**
 * Throws an InputError (`<where>: invalid envelope at "<field>": ...`) when `envelope` is one a
 * worker would dead-letter as INVALID_ENVELOPE: publishers refuse it before it is sent.
 */
export function assertEnvelope(envelope: Envelope, where: string): void {
  const problem = envelopeProblem(envelope);
  if (problem !== undefined) throw new InputError(`${where}: ${problem}`);
}
