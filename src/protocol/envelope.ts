import { randomUUID } from 'node:crypto';
import { z } from 'zod';

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

/** Schema of a v1 envelope as it appears on the wire. Unknown fields are ignored. */
export const envelopeSchema = z.object({
  qtune: z.number().int().positive(),
  id: z.string().min(1).max(256),
  type: z.enum(['task', 'result', 'event', 'request', 'reply', 'control']),
  task: z.string().max(256).optional(),
  payload: z.unknown().optional(),
  correlationId: z.string().max(256).optional(),
  replyTo: z.string().max(256).optional(),
  key: z.string().max(1024).optional(),
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
