/**
 * Stable error codes shared by every layer and written on the wire (dead-letter reasons,
 * failed results). Never renumber or rename one: other languages match on these strings.
 */
export const ErrorCode = {
  /** The body is not valid UTF-8 JSON. */
  MalformedJson: 'MALFORMED_JSON',
  /** The body is JSON with a `qtune` field but the envelope does not validate. */
  InvalidEnvelope: 'INVALID_ENVELOPE',
  /** The envelope's major version is newer than this receiver understands. */
  UnsupportedVersion: 'UNSUPPORTED_VERSION',
  /** The handler threw or the command exited non-zero. */
  HandlerFailed: 'HANDLER_FAILED',
  /** The handler ran past its time limit and was stopped. */
  Timeout: 'TIMEOUT',
  /** The task's deadline passed before it could run. */
  DeadlineExceeded: 'DEADLINE_EXCEEDED',
  /** The message was delivered `maxDeliveries` times without an ack. */
  MaxDeliveries: 'MAX_DELIVERIES',
  /** The message stayed in its queue longer than the queue's TTL. */
  Expired: 'EXPIRED',
  /** No handler is registered for the task name. */
  UnknownTask: 'UNKNOWN_TASK',
  /** The operation is not valid for the broker's current state (closed, unknown queue...). */
  BrokerState: 'BROKER_STATE',
  /** The broker could not be reached or refused the operation. */
  BrokerUnavailable: 'BROKER_UNAVAILABLE',
  /** A request did not get its reply in time. */
  ReplyTimeout: 'REPLY_TIMEOUT',
  /** Bad input from a user: a flag, a file, a config value. */
  BadInput: 'BAD_INPUT',
  /** A queue, job, experiment or broker file that does not exist (reading never creates one). */
  NotFound: 'NOT_FOUND',
  /** A queue re-declared with other properties than it has (AMQP's PRECONDITION_FAILED). */
  QueueMismatch: 'QUEUE_MISMATCH',
  /** The caller may not do this to that resource (another token's queue or consumer). */
  Forbidden: 'FORBIDDEN',
  /**
   * The store could not be opened or reached, or refused the operation (connection refused or
   * lost, authentication, a file that cannot be opened); nothing of the failed call was stored.
   */
  StoreUnavailable: 'STORE_UNAVAILABLE',
  /** The operation is not valid for the store's state: its handle is closed, or its schema is newer than this qtune. */
  StoreState: 'STORE_STATE',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Base class of every error qtune throws on purpose; `code` is stable, `cause` is kept. */
export class QtuneError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * An error that decides a task's fate. `retry: false` sends the task to its dead-letter queue
 * at once (a poison message); `retry: true` lets it be delivered again until max deliveries.
 */
export class TaskError extends QtuneError {
  readonly retry: boolean;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; retry?: boolean }) {
    super(code, message, options);
    this.retry = options?.retry ?? true;
  }
}

/** The message body could not be decoded; never worth retrying. */
export class DecodeError extends TaskError {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, { ...options, retry: false });
  }
}

/** Infrastructure failure: the broker is gone, closed, or refused. */
export class BrokerError extends QtuneError {}

/** Infrastructure failure of the store (`STORE_UNAVAILABLE`, `STORE_STATE`): gone, closed, or refused. */
export class StoreError extends QtuneError {}

/** A named thing does not exist; `target` is what was asked for, `suggestion` the closest existing name. */
export class NotFoundError extends QtuneError {
  readonly kind: string;
  readonly target: string;
  readonly suggestion: string | undefined;
  constructor(kind: string, name: string, suggestion?: string, options?: { cause?: unknown }) {
    super(
      ErrorCode.NotFound,
      `${kind} "${name}" does not exist` +
        (suggestion === undefined ? '' : ` (did you mean "${suggestion}"?)`),
      options,
    );
    this.kind = kind;
    this.target = name;
    this.suggestion = suggestion;
  }
}

/** Bad input from a user (flag, file, config); the CLI exits with code 2. */
export class InputError extends QtuneError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.BadInput, message, options);
  }
}

/** Normalizes anything thrown into an Error, once, at a boundary. */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  if (typeof thrown === 'string') return new Error(thrown);
  try {
    return new Error(JSON.stringify(thrown));
  } catch {
    return new Error(String(thrown));
  }
}

/** The stable code of an error, or HANDLER_FAILED for errors that are not qtune's own. */
export function errorCode(err: unknown): ErrorCode {
  return err instanceof QtuneError ? err.code : ErrorCode.HandlerFailed;
}
