import { ErrorCode, InputError, TaskError } from '../../protocol/errors.js';
import type { TaskContext, TaskHandler } from './types.js';

export interface HttpPoolOptions {
  /** Extra request headers, e.g. an authorization header read from the environment. */
  headers?: Record<string, string>;
  /** How long an endpoint that failed is avoided, in ms (default: 5000). */
  cooldownMs?: number;
  /** Most characters of an error response body kept in the failure message (default: 2000). */
  maxErrorBodyChars?: number;
}

/** What the pool knows about one endpoint right now. */
export interface EndpointState {
  url: string;
  /** Requests sent and not yet answered. */
  outstanding: number;
  /** Epoch ms until which the endpoint is avoided after a failure (0 when up). */
  downUntil: number;
  /** Requests answered with a 2xx. */
  succeeded: number;
  /** Requests that failed (connection error, 5xx, 429). */
  failed: number;
}

const DEFAULTS = { cooldownMs: 5_000, maxErrorBodyChars: 2_000 } as const;

/**
 * A pool of HTTP endpoints that serve the same work (for example several LLM servers on one GPU
 * box). Each request goes to the endpoint with the fewest outstanding requests (ties: round
 * robin); a connection error, a 5xx or a 429 marks the endpoint down for `cooldownMs` and the
 * request moves to the next endpoint, trying each at most once. Any other 4xx fails the task
 * at once without failover or retry.
 */
export class HttpEndpointPool {
  readonly #endpoints: EndpointState[];
  readonly #headers: Record<string, string>;
  readonly #cooldownMs: number;
  readonly #maxBody: number;
  #cursor = 0;

  constructor(urls: readonly string[], options: HttpPoolOptions = {}) {
    if (urls.length === 0) {
      throw new InputError('http pool: at least one endpoint URL is required');
    }
    for (const url of urls) {
      try {
        new URL(url);
      } catch (err) {
        throw new InputError(`http pool: endpoint "${url}" is not a URL`, { cause: err });
      }
    }
    this.#endpoints = urls.map((url) => ({
      url,
      outstanding: 0,
      downUntil: 0,
      succeeded: 0,
      failed: 0,
    }));
    this.#headers = {
      'content-type': 'application/json',
      accept: 'application/json',
      ...options.headers,
    };
    this.#cooldownMs = options.cooldownMs ?? DEFAULTS.cooldownMs;
    this.#maxBody = options.maxErrorBodyChars ?? DEFAULTS.maxErrorBodyChars;
  }

  /** A copy of every endpoint's state. */
  snapshot(): EndpointState[] {
    return this.#endpoints.map((e) => ({ ...e }));
  }

  /**
   * POSTs `payload` as JSON and returns the parsed response (JSON, else the text; empty is
   * `null`). Rejects with a TaskError naming each endpoint's failure when all of them failed.
   */
  async request(payload: unknown, signal?: AbortSignal): Promise<unknown> {
    let body: string;
    try {
      body = JSON.stringify(payload) ?? 'null';
    } catch (err) {
      throw new TaskError(ErrorCode.HandlerFailed, 'http pool: payload is not JSON', {
        cause: err,
        retry: false,
      });
    }
    const tried = new Set<EndpointState>();
    const failures: string[] = [];
    for (;;) {
      const endpoint = this.#pick(tried);
      if (!endpoint) break;
      tried.add(endpoint);
      endpoint.outstanding++;
      let response: Response;
      let text: string;
      try {
        response = await fetch(endpoint.url, {
          method: 'POST',
          headers: this.#headers,
          body,
          signal,
        });
        text = await response.text();
      } catch (err) {
        if (signal?.aborted) throw abortReason(signal, endpoint.url);
        this.#markDown(endpoint);
        failures.push(`${endpoint.url}: ${describeFetchError(err)}`);
        continue;
      } finally {
        endpoint.outstanding--;
      }
      if (response.ok) {
        endpoint.succeeded++;
        return parseBody(text);
      }
      const detail = `${endpoint.url}: HTTP ${response.status}${this.#bodyExcerpt(text)}`;
      if (response.status >= 500 || response.status === 429) {
        this.#markDown(endpoint);
        failures.push(detail);
        continue;
      }
      // Other 4xx: the request itself is wrong; another endpoint or another try will not help.
      throw new TaskError(ErrorCode.HandlerFailed, `POST ${detail}`, { retry: false });
    }
    throw new TaskError(
      ErrorCode.HandlerFailed,
      `http pool: all ${this.#endpoints.length} endpoint(s) failed: ${failures.join('; ')}`,
    );
  }

  /**
   * Least outstanding requests among the endpoints not yet tried, preferring those that are up;
   * ties go to the first one at or after the round-robin cursor.
   */
  #pick(tried: ReadonlySet<EndpointState>): EndpointState | undefined {
    const now = Date.now();
    const n = this.#endpoints.length;
    let best: EndpointState | undefined;
    let bestIndex = 0;
    let bestUp = false;
    for (let k = 0; k < n; k++) {
      const index = (this.#cursor + k) % n;
      const e = this.#endpoints[index]!;
      if (tried.has(e)) continue;
      const up = e.downUntil <= now;
      const better =
        best === undefined ||
        (up && !bestUp) ||
        (up === bestUp && e.outstanding < best.outstanding);
      if (better) {
        best = e;
        bestIndex = index;
        bestUp = up;
      }
    }
    if (best) this.#cursor = (bestIndex + 1) % n;
    return best;
  }

  #markDown(endpoint: EndpointState): void {
    endpoint.failed++;
    endpoint.downUntil = Date.now() + this.#cooldownMs;
  }

  #bodyExcerpt(text: string): string {
    const trimmed = text.trim();
    if (trimmed === '') return '';
    const cut = trimmed.length > this.#maxBody ? `${trimmed.slice(0, this.#maxBody)}...` : trimmed;
    return `: ${cut}`;
  }
}

/**
 * A handler that POSTs each task's payload to one endpoint of an {@link HttpEndpointPool}; the
 * response is the task's result. The task's abort signal cancels the request. Uses the global
 * fetch, which keeps connections alive.
 */
export function httpPoolHandler(
  urls: readonly string[],
  options: HttpPoolOptions = {},
): TaskHandler {
  const pool = new HttpEndpointPool(urls, options);
  return (payload: unknown, ctx: TaskContext) => pool.request(payload, ctx.signal);
}

function parseBody(text: string): unknown {
  if (text.trim() === '') return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

function describeFetchError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  // undici reports "fetch failed" and puts the useful part (ECONNREFUSED ...) in `cause`.
  const cause: unknown = err.cause;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return typeof code === 'string' ? `${code} (${cause.message})` : cause.message;
  }
  return err.message;
}

function abortReason(signal: AbortSignal, url: string): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  return new TaskError(ErrorCode.HandlerFailed, `POST ${url} was aborted`);
}
