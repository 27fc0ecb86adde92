/**
 * How the gateway answers errors: every refusal, whether a route threw it, the router refused
 * the URL or node's HTTP parser refused the request, is `{ error: { code, message } }` with a
 * stable code (src/gateway/errors.ts); this module maps what was thrown to that answer.
 */
import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyServerOptions } from 'fastify';
import {
  BrokerError,
  ErrorCode,
  InputError,
  QtuneError,
  StoreError,
  toError,
} from '../protocol/errors.js';
import { printable } from '../protocol/names.js';
import { GatewayErrorCode, HttpError } from './errors.js';

export function errorBody(
  code: string,
  message: string,
): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

/**
 * The fastify server options that answer the router's own refusals (bad %-escapes, over-long
 * parameters) and requests node's HTTP parser refuses in the documented shape.
 */
export function refusalOptions(
  bodyLimit: number,
): Pick<FastifyServerOptions, 'frameworkErrors' | 'clientErrorHandler'> {
  return {
    frameworkErrors: (thrown, _req, reply) => {
      const err = asHttpError(thrown, bodyLimit);
      void (reply as FastifyReply).code(err.statusCode).send(errorBody(err.code, err.message));
    },
    // Requests node's HTTP parser refuses never reach fastify: answered on the socket.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const [status, code, message] =
        err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
          ? [408, GatewayErrorCode.BadInput, 'the request was not received in time']
          : err.code === 'HPE_HEADER_OVERFLOW'
            ? [431, GatewayErrorCode.BadInput, 'the request headers are too large']
            : [400, GatewayErrorCode.BadInput, 'the request is not valid HTTP'];
      const body = JSON.stringify(errorBody(code, message));
      if (socket.writable) {
        socket.write(
          `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`,
        );
      }
      socket.destroy(err);
    },
  };
}

/** Sets `app`'s not-found and error handlers (they apply to every route module). */
export function handleErrors(app: FastifyInstance, bodyLimit: number): void {
  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .send(
        errorBody(GatewayErrorCode.NotFound, `no route ${req.method} ${req.url.split('?')[0]}`),
      );
  });
  app.setErrorHandler((thrown: FastifyError | Error, req, reply) => {
    const err = asHttpError(thrown, bodyLimit);
    if (err.retryAfterS !== undefined) void reply.header('retry-after', String(err.retryAfterS));
    if (err.statusCode === 401) void reply.header('www-authenticate', 'Bearer realm="qtune"');
    const log = { reqId: req.id, method: req.method, url: req.url, status: err.statusCode };
    if (err.code === GatewayErrorCode.Internal) {
      req.log.error(
        { ...log, err: err.message, stack: toError(err.cause).stack },
        'request failed',
      );
    } else if (err.statusCode >= 500) req.log.warn({ ...log, err: err.message }, 'request failed');
    else req.log.debug({ ...log, code: err.code }, 'request refused');
    void reply.code(err.statusCode).send({ ...errorBody(err.code, err.message), ...err.details });
  });
}

/** Maps whatever a handler threw to an HttpError with a stable code. */
export function asHttpError(thrown: unknown, bodyLimit: number): HttpError {
  if (thrown instanceof HttpError) return thrown;
  const err = toError(thrown);
  const fst = err as FastifyError;
  switch (fst.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HttpError(
        413,
        GatewayErrorCode.PayloadTooLarge,
        `request body is over the gateway's limit of ${bodyLimit} bytes (qtune serve --body-limit); nothing was published`,
      );
    case 'FST_ERR_BAD_URL':
      return new HttpError(
        400,
        GatewayErrorCode.BadInput,
        `the URL path has a %-escape that does not decode: ${printable(err.message)}`,
      );
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new HttpError(
        414,
        GatewayErrorCode.BadInput,
        'a path parameter is over 512 characters (names are at most 200 bytes)',
      );
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HttpError(
        415,
        GatewayErrorCode.UnsupportedMediaType,
        `${err.message}; send application/json or application/x-ndjson`,
      );
    default:
      break;
  }
  if (err instanceof InputError) return new HttpError(400, GatewayErrorCode.BadInput, err.message);
  if (err instanceof BrokerError && err.code === ErrorCode.BrokerUnavailable) {
    return new HttpError(503, GatewayErrorCode.BrokerUnavailable, err.message, {
      retryAfterS: 1,
      cause: err,
    });
  }
  if (err instanceof QtuneError && err.code === ErrorCode.BadInput) {
    return new HttpError(400, GatewayErrorCode.BadInput, err.message);
  }
  if (err instanceof QtuneError && err.code === ErrorCode.QueueMismatch) {
    return new HttpError(409, GatewayErrorCode.QueueMismatch, err.message, { cause: err });
  }
  if (err instanceof QtuneError && err.code === ErrorCode.NotFound) {
    return new HttpError(404, GatewayErrorCode.NotFound, err.message, { cause: err });
  }
  if (err instanceof StoreError) {
    const code =
      err.code === ErrorCode.StoreState
        ? GatewayErrorCode.StoreState
        : GatewayErrorCode.StoreUnavailable;
    return new HttpError(409, code, err.message, { cause: err });
  }
  if (err instanceof QtuneError) {
    return new HttpError(409, GatewayErrorCode.BrokerState, err.message, { cause: err });
  }
  const status = typeof fst.statusCode === 'number' ? fst.statusCode : 500;
  if (status >= 400 && status < 500) {
    return new HttpError(status, GatewayErrorCode.BadInput, err.message, { cause: err });
  }
  return new HttpError(500, GatewayErrorCode.Internal, err.message, { cause: err });
}
