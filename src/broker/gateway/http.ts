import { setTimeout as sleep } from 'node:timers/promises';
import type { z } from 'zod';
import { BrokerError, ErrorCode, InputError, QtuneError, toError } from '../../protocol/errors.js';
import { redact } from '../../protocol/redact.js';
import { errorResponseSchema } from '../../protocol/gateway-wire.js';

/** What the connection state machine reports: a request failed to connect, or got through. */
export interface LinkEvents {
  down(): void;
  up(): void;
}

export interface HttpClientOptions {
  /** Gateway base URL, e.g. `https://gw.example.com:8080`. */
  url: string;
  /** Bearer token (default: none). */
  token?: string;
  /** Keep retrying a failed request this long before giving up, in ms (default: 60000). */
  retryTimeoutMs?: number;
  /** Time limit of one attempt, in ms (default: 120000). */
  attemptTimeoutMs?: number;
  events: LinkEvents;
}

export interface RequestOptions {
  /** Statuses returned to the caller instead of thrown (e.g. 410 for a lease). */
  allow?: readonly number[];
  /** Retry on connection errors, 429 and 502-504 (default: true). */
  retry?: boolean;
  /** Retry for this long instead of the client's retryTimeoutMs (Infinity: until aborted). */
  retryTimeoutMs?: number;
  /** Time limit of one attempt, in ms. */
  attemptTimeoutMs?: number;
  /** Aborts the request and its retries. */
  signal?: AbortSignal;
}

export interface HttpResult {
  status: number;
  body: unknown;
}

/** Validates a gateway answer; a BrokerError naming the request when it is not the expected shape. */
export function parseAnswer<S extends z.ZodType>(
  schema: S,
  body: unknown,
  what: string,
): z.output<S> {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.length ? issue.path.join('.') : '(root)';
    throw new BrokerError(
      ErrorCode.BrokerState,
      `${what}: the gateway's answer is invalid at "${path}": ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

const RETRY_STATUSES = new Set([429, 502, 503, 504]);
const BACKOFF_FIRST_MS = 100;
const BACKOFF_MAX_MS = 5_000;

/**
 * JSON over fetch with retries: connection errors, 429 and 502-504 are retried with exponential
 * backoff (honouring Retry-After) until the retry time runs out; other error statuses become
 * QtuneErrors carrying the gateway's message.
 */
export class HttpClient {
  readonly base: string;
  readonly #token: string | undefined;
  readonly #retryTimeoutMs: number;
  readonly #attemptTimeoutMs: number;
  readonly #events: LinkEvents;

  constructor(options: HttpClientOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.#token = options.token;
    this.#retryTimeoutMs = options.retryTimeoutMs ?? 60_000;
    this.#attemptTimeoutMs = options.attemptTimeoutMs ?? 120_000;
    this.#events = options.events;
  }

  /** Sends `body` as JSON to `path`; resolves with the status and the parsed JSON answer. */
  async request(
    method: string,
    path: string,
    body?: unknown,
    options: RequestOptions = {},
  ): Promise<HttpResult> {
    const retryFor = options.retryTimeoutMs ?? this.#retryTimeoutMs;
    const deadline = Date.now() + retryFor;
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.#token !== undefined) headers.authorization = `Bearer ${this.#token}`;
    let payload: string | undefined;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    const what = `gateway ${method} ${path}`;
    for (let attempt = 1; ; attempt++) {
      options.signal?.throwIfAborted();
      let res: Response;
      let text: string;
      let why: string;
      let retryAfterMs: number | undefined;
      try {
        const timeout = AbortSignal.timeout(options.attemptTimeoutMs ?? this.#attemptTimeoutMs);
        res = await fetch(this.base + path, {
          method,
          headers,
          ...(payload !== undefined && { body: payload }),
          signal: options.signal ? AbortSignal.any([options.signal, timeout]) : timeout,
        });
        text = await res.text();
      } catch (err) {
        if (options.signal?.aborted) throw options.signal.reason;
        why = `cannot reach ${redact(this.base)}: ${describeFetchError(err)}`;
        this.#events.down();
        if (options.retry === false || Date.now() >= deadline) {
          throw new BrokerError(ErrorCode.BrokerUnavailable, `${what}: ${why}`, { cause: err });
        }
        await this.#wait(attempt, undefined, options.signal);
        continue;
      }
      if (RETRY_STATUSES.has(res.status) && !options.allow?.includes(res.status)) {
        why = `${res.status}: ${errorMessage(text)}`;
        if (res.status !== 429) this.#events.down();
        const header = res.headers.get('retry-after');
        if (header !== null && /^\d+$/.test(header)) retryAfterMs = Number(header) * 1000;
        if (options.retry === false || Date.now() >= deadline) {
          throw new BrokerError(ErrorCode.BrokerUnavailable, `${what}: ${why}`);
        }
        await this.#wait(attempt, retryAfterMs, options.signal);
        continue;
      }
      this.#events.up();
      let parsed: unknown = undefined;
      if (text !== '') {
        try {
          parsed = JSON.parse(text);
        } catch {
          throw new BrokerError(
            ErrorCode.BrokerState,
            `${what}: answer ${res.status} is not JSON: ${text.slice(0, 200)}`,
          );
        }
      }
      if (res.ok || options.allow?.includes(res.status))
        return { status: res.status, body: parsed };
      throw statusError(what, res.status, parsed, text);
    }
  }

  async #wait(attempt: number, retryAfterMs: number | undefined, signal?: AbortSignal) {
    const backoff = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.min(attempt - 1, 10));
    const jittered = Math.round(backoff * (0.5 + Math.random() * 0.5));
    const ms = retryAfterMs !== undefined ? Math.max(retryAfterMs, jittered) : jittered;
    await sleep(ms, undefined, signal ? { signal } : undefined);
  }
}

function describeFetchError(err: unknown): string {
  const e = toError(err);
  const cause = (e as { cause?: unknown }).cause;
  if (cause instanceof Error) {
    const code = (cause as { code?: unknown }).code;
    return typeof code === 'string' ? `${code} (${cause.message})` : cause.message;
  }
  return e.message;
}

function errorMessage(text: string): string {
  try {
    const parsed = errorResponseSchema.safeParse(JSON.parse(text));
    if (parsed.success) return `${parsed.data.error.code}: ${parsed.data.error.message}`;
  } catch {
    // not JSON
  }
  return text.slice(0, 200) || '(no body)';
}

/** The QtuneError for an error status: 400/413 are the caller's input, the rest broker state. */
function statusError(what: string, status: number, parsed: unknown, text: string): Error {
  const e = errorResponseSchema.safeParse(parsed);
  const message = e.success
    ? `${e.data.error.code}: ${e.data.error.message}`
    : text.slice(0, 200) || '(no body)';
  if (status === 400 || status === 413 || status === 415 || status === 422) {
    return new InputError(`${what}: ${status} ${message}`);
  }
  if (e.success && e.data.error.code === ErrorCode.QueueMismatch) {
    return new QtuneError(ErrorCode.QueueMismatch, `${what}: ${status} ${message}`);
  }
  if (status === 404 && e.success && e.data.error.code === ErrorCode.NotFound) {
    return new QtuneError(ErrorCode.NotFound, `${what}: ${status} ${message}`);
  }
  if (status === 403) {
    return new QtuneError(ErrorCode.Forbidden, `${what}: ${status} ${message}`);
  }
  if (status === 401) {
    return new BrokerError(
      ErrorCode.BrokerUnavailable,
      `${what}: 401 the gateway refused the token (${message}); set QTUNE_TOKEN or --token`,
    );
  }
  return new BrokerError(ErrorCode.BrokerState, `${what}: ${status} ${message}`);
}
