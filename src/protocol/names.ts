/**
 * Names that cross a boundary (queue names, topics, job and experiment names, reply-to
 * addresses) are checked here, once, with the same rules on every broker: a name that one
 * broker accepts and another refuses, or that prints as a terminal escape, never gets in.
 */
import { InputError } from './errors.js';

/**
 * Longest queue name, in UTF-8 bytes. Every name qtune derives from a queue
 * (`NAME.results.dead`, `qtune.exp.NAME.reports.dead`, ...) adds at most 50 bytes, so all of
 * them fit AMQP's 255-byte limit.
 */
export const MAX_QUEUE_NAME_BYTES = 200;

/**
 * Longest queue name a broker takes, in UTF-8 bytes: AMQP's 255 less the longest suffix a broker
 * derives from a queue itself (`.delayed.50000000`, 17 bytes). Names qtune derives from a
 * user's queue (`NAME.results`, `NAME.results.dead`) are longer than MAX_QUEUE_NAME_BYTES and
 * fit under this; users name queues of at most MAX_QUEUE_NAME_BYTES.
 */
export const MAX_BROKER_QUEUE_NAME_BYTES = 238;

/** Longest job or experiment name, in UTF-8 bytes; their queues are derived from it. */
export const MAX_NAME_BYTES = 128;

// C0 and C1 controls, DEL, and the bidirectional overrides that reorder what a terminal shows.
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;
// eslint-disable-next-line no-control-regex
const UNPRINTABLE_ALL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;
const WILDCARDS = /[*#>]/u;

/** How a name is checked. */
export interface NameRules {
  /** Longest name in UTF-8 bytes (default: MAX_QUEUE_NAME_BYTES). */
  maxBytes?: number;
  /** Accept names that start with `amq.`, such as RabbitMQ's direct reply-to (default: false). */
  allowAmq?: boolean;
  /** Accept `*`, `#` and `>`, as in a task name that is never a queue (default: false). */
  allowWildcards?: boolean;
}

/**
 * Why `name` is not a valid name of this kind, or undefined when it is. `kind` names the thing
 * in the message (`queue`, `job`, `experiment`, `replyTo`).
 */
export function nameProblem(kind: string, name: string, rules: NameRules = {}): string | undefined {
  const maxBytes = rules.maxBytes ?? MAX_QUEUE_NAME_BYTES;
  if (name.length === 0) return `${kind} name is empty`;
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes > maxBytes) {
    return `${kind} name "${printable(name.slice(0, 40))}..." is ${bytes} bytes long; the limit is ${maxBytes}`;
  }
  const bad = UNPRINTABLE.exec(name);
  if (bad !== null) {
    return `${kind} name "${printable(name)}" contains the control character ${codePoint(bad[0])} at index ${bad.index}`;
  }
  if (rules.allowWildcards !== true && WILDCARDS.test(name)) {
    return `${kind} name "${printable(name)}" contains a wildcard (*, # or >), which is reserved for topic patterns`;
  }
  if (rules.allowAmq !== true && name.startsWith('amq.')) {
    return `${kind} name "${name}" starts with "amq.", which AMQP brokers reserve for themselves`;
  }
  if (name !== name.trim()) return `${kind} name "${name}" starts or ends with white space`;
  return undefined;
}

/** Throws an InputError naming the problem when `name` is not a valid name of this kind. */
export function assertName(kind: string, name: string, rules?: NameRules): string {
  const problem = nameProblem(kind, name, rules);
  if (problem !== undefined) throw new InputError(problem);
  return name;
}

/**
 * `text` safe to print on a terminal: control characters and bidirectional overrides become
 * `\xNN` / `\u{NNNN}` escapes, everything else is kept.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE_ALL, (c) => {
    const cp = c.codePointAt(0)!;
    return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u{${cp.toString(16)}}`;
  });
}

function codePoint(c: string): string {
  return `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
}
