import { redact } from '../../protocol/redact.js';
import { ErrorCode, InputError, TaskError } from '../../protocol/errors.js';
import { printable } from '../../protocol/names.js';
import {
  CircuitBreaker,
  type BreakerOptions,
  type BreakerState,
  type BreakerPermit,
  type BreakerTransition,
} from './circuit-breaker.js';
import type { TaskContext, TaskHandler } from './types.js';

export interface HttpPoolOptions {
  /** Extra request headers, e.g. an authorization header read from the environment. */
  headers?: Record<string, string>;
  /** When an endpoint's circuit breaker opens and how long it stays open (defaults: 5 consecutive failures, or ≥ 50 % of the last 20 with at least 10; cool-down 2 s). */
  breaker?: BreakerOptions;
  /** Most characters of an error response body kept in the failure message (default: 2000). */
  maxErrorBodyChars?: number;
  /** Called when an endpoint's breaker changes state, e.g. to log it (default: none). */
  onBreakerChange?: (url: string, transition: BreakerTransition) => void;
}

/** What the pool knows about one endpoint right now. */
export interface EndpointState {
  url: string;
  /** `up`, `open` (cooling down: no requests) or `half-open` (one probe request at a time). */
  state: BreakerState;
  /** Requests sent and not yet answered. */
  outstanding: number;
  /** Requests answered with a 2xx. */
  succeeded: number;
  /** Requests that failed (connection error, 5xx, 429). */
  failed: number;
  /** Failures since the endpoint's last success. */
  consecutiveFailures: number;
  /** Failures among `recentRequests`, the outcomes in the breaker's failure-rate window. */
  recentFailures: number;
  recentRequests: number;
  /** Times the endpoint's breaker has opened. */
  opened: number;
  /** While open: epoch ms at which a probe request may go through. */
  retryAt?: number;
  /** Why the breaker last opened, e.g. `5 consecutive failures`. */
  reason?: string;
}

interface Endpoint {
  url: string;
  breaker: CircuitBreaker;
  outstanding: number;
  succeeded: number;
  failed: number;
}

const DEFAULTS = { maxErrorBodyChars: 2_000 } as const;

/** The schemes an endpoint URL may have. */
const SCHEMES = new Set(['http:', 'https:']);

/**
 * Checks that `url` is an absolute http:// or https:// URL with a host; throws an InputError
 * naming it (and `what`, e.g. `--http`) otherwise. Returns the URL as given.
 */
export function checkEndpointUrl(url: string, what = 'http pool'): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (err) {
    throw new InputError(`${what}: endpoint "${shown(url)}" is not a URL`, { cause: err });
  }
  if (!SCHEMES.has(parsed.protocol)) {
    throw new InputError(
      `${what}: endpoint "${shown(url)}" has scheme "${shown(parsed.protocol)}"; expected http:// or https://`,
    );
  }
  if (parsed.hostname === '') {
    throw new InputError(`${what}: endpoint "${shown(url)}" has no host`);
  }
  return url;
}

/**
 * A pool of HTTP endpoints that serve the same work (for example several LLM servers on one GPU
 * box). Each request goes to the endpoint with the fewest outstanding requests (ties: round
 * robin) among those whose circuit breaker lets it through ({@link CircuitBreaker}: open after
 * consecutive failures or a high failure rate, closed again by a successful probe after a
 * cool-down). A connection error, a 5xx or a 429 counts as a failure and the request moves to
 * another endpoint, trying each at most once; any other 4xx fails the task at once without
 * failover or retry. When no endpoint may take a request (all open, or probing), a request
 * that has tried none waits for the first one that may, until its task's signal aborts.
 */
export class HttpEndpointPool {
  readonly #endpoints: Endpoint[];
  readonly #headers: Record<string, string>;
  readonly #maxBody: number;
  readonly #waiters = new Set<() => void>();
  #cursor = 0;

  constructor(urls: readonly string[], options: HttpPoolOptions = {}) {
    if (urls.length === 0) {
      throw new InputError('http pool: at least one endpoint URL is required');
    }
    for (const url of urls) checkEndpointUrl(url);
    const onChange = options.onBreakerChange;
    this.#endpoints = urls.map((url) => ({
      url,
      breaker: new CircuitBreaker(options.breaker, {
        ...(onChange && { onTransition: (t: BreakerTransition) => onChange(url, t) }),
      }),
      outstanding: 0,
      succeeded: 0,
      failed: 0,
    }));
    this.#headers = {
      'content-type': 'application/json',
      accept: 'application/json',
      ...options.headers,
    };
    this.#maxBody = options.maxErrorBodyChars ?? DEFAULTS.maxErrorBodyChars;
  }

  /** A copy of every endpoint's state. */
  snapshot(): EndpointState[] {
    return this.#endpoints.map((e) => ({
      url: e.url,
      outstanding: e.outstanding,
      succeeded: e.succeeded,
      failed: e.failed,
      ...e.breaker.snapshot(),
    }));
  }

  /** A task handler that POSTs each payload through this pool; the task's signal cancels it. */
  handler(): TaskHandler {
    return (payload: unknown, ctx: TaskContext) => this.request(payload, ctx.signal);
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
    const tried = new Set<Endpoint>();
    const failures: string[] = [];
    for (;;) {
      if (signal?.aborted) throw abortReason(signal, 'http pool: request');
      const pick = this.#pick(tried);
      if (pick === undefined) {
        const closed = this.#endpoints.filter((e) => !tried.has(e));
        if (closed.length === 0) break;
        if (tried.size === 0) {
          // Every endpoint is open or probing: wait for one rather than fail the task.
          await this.#waitForEndpoint(signal);
          continue;
        }
        // This request already failed somewhere: the task's retry is better than a wait.
        for (const e of closed) failures.push(`${e.url}: ${this.#unavailable(e)}`);
        break;
      }
      const { endpoint, permit } = pick;
      tried.add(endpoint);
      const outcome = await this.#send(endpoint, permit, body, signal);
      if (outcome.ok) return outcome.value;
      failures.push(outcome.detail);
    }
    throw new TaskError(
      ErrorCode.HandlerFailed,
      `http pool: all ${this.#endpoints.length} endpoint(s) failed: ${failures.join('; ')}`,
    );
  }

  /**
   * One POST to one endpoint, settling its breaker permit. Resolves with the value, or with a
   * failure to fail over from; rejects on abort and on a 4xx other than 429.
   */
  async #send(
    endpoint: Endpoint,
    permit: BreakerPermit,
    body: string,
    signal: AbortSignal | undefined,
  ): Promise<{ ok: true; value: unknown } | { ok: false; detail: string }> {
    endpoint.outstanding++;
    try {
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
        if (signal?.aborted) {
          endpoint.breaker.cancelled(permit);
          throw abortReason(signal, `POST ${endpoint.url}`);
        }
        this.#failed(endpoint, permit);
        return { ok: false, detail: `${endpoint.url}: ${describeFetchError(err)}` };
      }
      const detail = `${endpoint.url}: HTTP ${response.status}${this.#bodyExcerpt(text)}`;
      if (response.status >= 500 || response.status === 429) {
        this.#failed(endpoint, permit);
        return { ok: false, detail };
      }
      // A 2xx, or a 4xx: either way the endpoint is alive and answering.
      endpoint.breaker.succeeded(permit);
      if (response.ok) {
        endpoint.succeeded++;
        return { ok: true, value: parseBody(text) };
      }
      // Other 4xx: the request itself is wrong; another endpoint or another try will not help.
      throw new TaskError(ErrorCode.HandlerFailed, `POST ${detail}`, { retry: false });
    } finally {
      endpoint.outstanding--;
      this.#wake();
    }
  }

  #failed(endpoint: Endpoint, permit: BreakerPermit): void {
    endpoint.failed++;
    endpoint.breaker.failed(permit);
  }

  /**
   * Least outstanding requests among the endpoints not yet tried whose breaker lets a request
   * through; ties go to the first one at or after the round-robin cursor. Takes the permit.
   */
  #pick(tried: ReadonlySet<Endpoint>): { endpoint: Endpoint; permit: BreakerPermit } | undefined {
    const n = this.#endpoints.length;
    let best: Endpoint | undefined;
    let bestIndex = 0;
    for (let k = 0; k < n; k++) {
      const index = (this.#cursor + k) % n;
      const e = this.#endpoints[index]!;
      if (tried.has(e) || !e.breaker.available) continue;
      if (best === undefined || e.outstanding < best.outstanding) {
        best = e;
        bestIndex = index;
      }
    }
    if (!best) return undefined;
    this.#cursor = (bestIndex + 1) % n;
    return { endpoint: best, permit: best.breaker.acquire()! };
  }

  /** Resolves when a request settles, when the first open breaker's cool-down ends, or on abort. */
  async #waitForEndpoint(signal: AbortSignal | undefined): Promise<void> {
    const retryAts = this.#endpoints
      .map((e) => e.breaker.retryAt)
      .filter((t): t is number => t !== undefined);
    const delay = retryAts.length > 0 ? Math.max(0, Math.min(...retryAts) - Date.now()) : undefined;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = delay !== undefined ? setTimeout(done, delay + 1) : undefined;
      this.#waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }

  #unavailable(endpoint: Endpoint): string {
    const s = endpoint.breaker.snapshot();
    const why = s.reason !== undefined ? ` after ${s.reason}` : '';
    if (s.retryAt !== undefined) {
      const inMs = Math.max(0, s.retryAt - Date.now());
      return `circuit open${why}, next probe in ${(inMs / 1000).toFixed(1)}s`;
    }
    return `circuit half-open${why}, probe in flight`;
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
  return new HttpEndpointPool(urls, options).handler();
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

function abortReason(signal: AbortSignal, what: string): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  return new TaskError(ErrorCode.HandlerFailed, `${what} was aborted`);
}

/** A URL as it may be printed: password hidden, control characters escaped. */
function shown(url: string): string {
  return printable(redact(url));
}
