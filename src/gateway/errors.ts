import { ErrorCode } from '../protocol/errors.js';

/**
 * Stable codes in the gateway's error answers `{ error: { code, message } }`. Clients match on
 * these strings; never rename one.
 */
export const GatewayErrorCode = {
  /** No bearer token, or one the gateway does not know (401). */
  Unauthorized: 'UNAUTHORIZED',
  /** The token's role may not call this endpoint (403). */
  Forbidden: 'FORBIDDEN',
  /** No such route, queue, job or experiment (404). */
  NotFound: 'NOT_FOUND',
  /** The body is over the gateway's body limit (413). */
  PayloadTooLarge: 'PAYLOAD_TOO_LARGE',
  /** The Content-Type is not one the endpoint reads (415). */
  UnsupportedMediaType: 'UNSUPPORTED_MEDIA_TYPE',
  /** The body is not valid JSON; the message gives the position (400). */
  MalformedJson: ErrorCode.MalformedJson,
  /** The body or a parameter is valid JSON but not what the endpoint expects (400). */
  BadInput: ErrorCode.BadInput,
  /** An Idempotency-Key was reused with another queue or body (422). */
  IdempotencyKeyReused: 'IDEMPOTENCY_KEY_REUSED',
  /** The lease is unknown: settled, expired, or handed back (410). */
  LeaseGone: 'LEASE_GONE',
  /** Over the token's request rate (429, with Retry-After). */
  RateLimited: 'RATE_LIMITED',
  /** Too many messages wait for broker confirmation (503, with Retry-After). */
  Overloaded: 'OVERLOADED',
  /** The broker is reconnecting or refused the operation (503, with Retry-After). */
  BrokerUnavailable: ErrorCode.BrokerUnavailable,
  /** The operation is not valid in the broker's state (409). */
  BrokerState: ErrorCode.BrokerState,
  /** The queue exists with other properties than the declaration asks for (409). */
  QueueMismatch: ErrorCode.QueueMismatch,
  /** The broker behind the gateway has no topics, so no worker reports (501). */
  TopicsUnavailable: 'TOPICS_UNAVAILABLE',
  /**
   * The gateway has no store, so it cannot add job items (501); or its store failed (409, as
   * every error of the store or broker state).
   */
  StoreUnavailable: ErrorCode.StoreUnavailable,
  /** The store's handle is closed or its schema is newer than the gateway's qtune (409). */
  StoreState: ErrorCode.StoreState,
  /** The gateway is shutting down (503). */
  ShuttingDown: 'SHUTTING_DOWN',
  /** A bug or an unexpected failure (500). */
  Internal: 'INTERNAL',
} as const;
export type GatewayErrorCode = (typeof GatewayErrorCode)[keyof typeof GatewayErrorCode];

/** An error answered with `statusCode` and `{ error: { code, message } }`. */
export class HttpError extends Error {
  readonly statusCode: number;
  readonly code: GatewayErrorCode;
  /** Seconds for a Retry-After header, if any. */
  readonly retryAfterS: number | undefined;
  /** Fields answered next to `error` (such as what a failed ingest stored). */
  readonly details: Record<string, unknown> | undefined;
  constructor(
    statusCode: number,
    code: GatewayErrorCode,
    message: string,
    options?: { cause?: unknown; retryAfterS?: number; details?: Record<string, unknown> },
  ) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = 'HttpError';
    this.statusCode = statusCode;
    this.code = code;
    this.retryAfterS = options?.retryAfterS;
    this.details = options?.details;
  }
}
