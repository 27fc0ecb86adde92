/**
 * How qtune's queue and topic names map onto JetStream: one stream per queue, named and
 * subjected by an escaped token of the queue name, with the queue's policy in the stream's
 * description (nats-server 2.9 has no stream metadata).
 */
import { createHash } from 'node:crypto';
import { InputError } from '../../protocol/errors.js';
import { printable } from '../../protocol/names.js';

/** Prefix of the stream of every qtune queue. */
export const STREAM_PREFIX = 'QTUNE_';
/** The durable pull consumer every qtune consumer of a queue shares. */
export const MAIN_CONSUMER = 'qtune';
/** The durable pull consumer that moves due delayed messages back to the queue. */
export const DELAY_CONSUMER = 'qtune-delay';
/** Subjects of topics published with `publishTopic`: `qtune.t.<word>.<word>...`. */
export const TOPIC_PREFIX = 'qtune.t';
/** Reply addresses of reply channels: core NATS inboxes, never streams. */
export const REPLY_PREFIX = '_INBOX.';
/** Longest token before a name is hashed instead (stream names are at most 255 bytes). */
const MAX_TOKEN = 200;

/**
 * A stream-name and subject-token safe, one-to-one encoding of `name`: letters, digits and `-`
 * are kept, every other UTF-8 byte becomes `_XX` (upper-case hex); a result longer than 200
 * characters becomes `_H_` and a SHA-256 prefix of the name (`_H` never comes out of escaping).
 */
export function token(name: string): string {
  let out = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9-]/.test(c) ? c : `_${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  if (out.length <= MAX_TOKEN) return out;
  return `_H_${createHash('sha256').update(name).digest('hex').slice(0, 40)}`;
}

/** The stream holding `queue`. */
export function streamOf(queue: string): string {
  return `${STREAM_PREFIX}${token(queue)}`;
}

/** The subject of `queue`'s ready messages. */
export function subjectOf(queue: string): string {
  return `qtune.q.${token(queue)}`;
}

/** The subject of `queue`'s delayed messages (published with a delay or nacked with one). */
export function delayedSubjectOf(queue: string): string {
  return `${subjectOf(queue)}.delayed`;
}

/** The subject of the presence consumer of one live qtune consumer (never carries messages). */
export function presenceSubjectOf(queue: string, id: string): string {
  return `${subjectOf(queue)}.c.${token(id)}`;
}

/** The subject `publishTopic(topic)` publishes on. */
export function topicSubject(topic: string): string {
  if (typeof topic !== 'string' || topic.length === 0) {
    throw new InputError(`topic must be a non-empty string, got ${JSON.stringify(topic)}`);
  }
  const words = topic.split('.');
  if (words.some((w) => w.length === 0)) {
    throw new InputError(`topic "${printable(topic)}": words must be non-empty, separated by "."`);
  }
  return `${TOPIC_PREFIX}.${words.map(token).join('.')}`;
}

/**
 * The NATS subjects to subscribe to for an AMQP-style topic `pattern` (checked already): `*`
 * maps to `*`; from the first `#` on, NATS has no equivalent (`>` is one or more trailing
 * tokens, `#` zero or more anywhere), so the pattern's words before it are subscribed with `>`
 * and, where `#` may match nothing, without it; the subscriber then matches each topic exactly.
 * Returns the subjects and whether topics must still be matched client-side.
 */
export function patternSubjects(pattern: string): { subjects: string[]; exact: boolean } {
  const words = pattern.split('.');
  const hash = words.indexOf('#');
  const mapped = (ws: string[]) => ws.map((w) => (w === '*' ? '*' : token(w)));
  if (hash < 0) return { subjects: [`${TOPIC_PREFIX}.${mapped(words).join('.')}`], exact: true };
  const prefix = mapped(words.slice(0, hash));
  const base = [TOPIC_PREFIX, ...prefix].join('.');
  // `#` as the pattern's last word matching zero words: the prefix alone is a topic too.
  const subjects = [`${base}.>`];
  if (prefix.length > 0) subjects.push(base);
  return { subjects, exact: false };
}

/** The policy of a queue as its stream's description records it. */
export interface StoredPolicy {
  durable: boolean;
  maxDeliveries: number;
  deadLetterQueue: string;
  priorities: number;
  leaseMs: number;
  messageTtlMs: number | undefined;
  temporary: boolean;
  /** Id of the broker handle that declared a temporary queue. */
  owner?: string;
}

interface Description extends Omit<StoredPolicy, 'messageTtlMs'> {
  qtune: 1;
  queue: string;
  messageTtlMs?: number;
}

/** The stream description recording `queue` and its policy. */
export function describe(queue: string, policy: StoredPolicy): string {
  const d: Description = {
    qtune: 1,
    queue,
    durable: policy.durable,
    maxDeliveries: policy.maxDeliveries,
    deadLetterQueue: policy.deadLetterQueue,
    priorities: policy.priorities,
    leaseMs: policy.leaseMs,
    temporary: policy.temporary,
    ...(policy.messageTtlMs !== undefined && { messageTtlMs: policy.messageTtlMs }),
    ...(policy.owner !== undefined && { owner: policy.owner }),
  };
  return JSON.stringify(d);
}

/** The queue name and policy a qtune stream's description records, or undefined. */
export function parseDescription(
  description: string | undefined,
): { queue: string; policy: StoredPolicy } | undefined {
  if (description === undefined || !description.startsWith('{')) return undefined;
  let d: Partial<Description>;
  try {
    d = JSON.parse(description) as Partial<Description>;
  } catch {
    return undefined;
  }
  if (d.qtune !== 1 || typeof d.queue !== 'string') return undefined;
  return {
    queue: d.queue,
    policy: {
      durable: d.durable !== false,
      maxDeliveries: typeof d.maxDeliveries === 'number' ? d.maxDeliveries : 5,
      deadLetterQueue:
        typeof d.deadLetterQueue === 'string' ? d.deadLetterQueue : `${d.queue}.dead`,
      priorities: typeof d.priorities === 'number' ? d.priorities : 10,
      leaseMs: typeof d.leaseMs === 'number' ? d.leaseMs : 30_000,
      messageTtlMs: typeof d.messageTtlMs === 'number' ? d.messageTtlMs : undefined,
      temporary: d.temporary === true,
      ...(typeof d.owner === 'string' && { owner: d.owner }),
    },
  };
}
