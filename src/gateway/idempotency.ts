import { createHash } from 'node:crypto';

/** A stored answer to a request made with an Idempotency-Key. */
export interface StoredAnswer {
  statusCode: number;
  body: unknown;
}

interface Entry {
  /** Fingerprint of the first request: queue and body hash. */
  fingerprint: string;
  expiresAt: number;
  /** Settles with the answer of the first request; rejects when it failed. */
  answer: Promise<StoredAnswer>;
}

/** Result of {@link IdempotencyCache.begin}. */
export type Begin =
  /**
   * First request with this key (or a retry of one that failed): publish, then call `done` (or
   * `fail`, with which items were stored when some were). `stored[i]` is true for an item a
   * failed earlier request with the same key and body stored: publish only the others.
   */
  | {
      kind: 'first';
      done: (answer: StoredAnswer) => void;
      fail: (stored?: readonly boolean[]) => void;
      stored?: readonly boolean[];
    }
  /** Seen before with the same fingerprint: replay this answer (it may still be in progress). */
  | { kind: 'replay'; answer: Promise<StoredAnswer> }
  /** Seen before with another queue or body. */
  | { kind: 'conflict' };

/**
 * In-memory store of answers by (token name, Idempotency-Key), bounded in size (least recently
 * used first out) and in age. It lives as long as the gateway process: after a restart a retry
 * publishes again, with the same deterministic ids.
 */
export class IdempotencyCache {
  readonly #entries = new Map<string, Entry>();
  /** Which items failed requests stored, by key, until a retry with the same body takes it. */
  readonly #partial = new Map<string, { fingerprint: string; stored: readonly boolean[] }>();
  readonly #maxEntries: number;
  readonly #ttlMs: number;

  /** @param maxEntries Keys kept (default: 10000). @param ttlMs Age of a kept answer (default: 24 h). */
  constructor(maxEntries = 10_000, ttlMs = 24 * 3_600_000) {
    this.#maxEntries = maxEntries;
    this.#ttlMs = ttlMs;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** Looks up `key` of `tokenName`; a first request reserves the key until done or fail. */
  begin(tokenName: string, key: string, fingerprint: string, now = Date.now()): Begin {
    const id = `${tokenName}\u0000${key}`;
    const found = this.#entries.get(id);
    if (found && found.expiresAt > now) {
      // Refresh its place in the LRU order.
      this.#entries.delete(id);
      this.#entries.set(id, found);
      if (found.fingerprint !== fingerprint) return { kind: 'conflict' };
      return { kind: 'replay', answer: found.answer };
    }
    if (found) this.#entries.delete(id);
    const partial = this.#partial.get(id);
    this.#partial.delete(id);
    let resolve!: (a: StoredAnswer) => void;
    let reject!: (e: Error) => void;
    const answer = new Promise<StoredAnswer>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A waiting replay gets the rejection; nobody else must see it as unhandled.
    answer.catch(() => undefined);
    const entry: Entry = { fingerprint, expiresAt: now + this.#ttlMs, answer };
    this.#entries.set(id, entry);
    while (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value as string;
      this.#entries.delete(oldest);
    }
    return {
      kind: 'first',
      done: (a) => resolve(a),
      fail: (stored) => {
        if (this.#entries.get(id) === entry) this.#entries.delete(id);
        if (stored?.includes(true)) {
          this.#partial.set(id, { fingerprint, stored });
          while (this.#partial.size > this.#maxEntries) {
            this.#partial.delete(this.#partial.keys().next().value as string);
          }
        }
        reject(new Error('the first request with this Idempotency-Key failed'));
      },
      ...(partial?.fingerprint === fingerprint && { stored: partial.stored }),
    };
  }
}

/** Fingerprint of a request: its queue, content type and a hash of its body. */
export function requestFingerprint(queue: string, contentType: string, body: Buffer): string {
  return createHash('sha256')
    .update(queue)
    .update('\u0000')
    .update(contentType)
    .update('\u0000')
    .update(body)
    .digest('base64');
}

/**
 * A deterministic id for item `index` of a request with Idempotency-Key `key` from token
 * `tokenName`: a UUID-shaped (version 8) digest, so a retry publishes the same ids.
 */
export function deterministicId(tokenName: string, key: string, index: number): string {
  const h = createHash('sha256')
    .update(tokenName)
    .update('\u0000')
    .update(key)
    .update('\u0000')
    .update(String(index))
    .digest();
  h[6] = (h[6]! & 0x0f) | 0x80;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
