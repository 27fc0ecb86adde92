/**
 * The gateway's logs: a child of the caller's pino logger that redacts credentials, and one
 * debug line per answered request naming the token that made it.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { GatewayContext } from './context.js';

/** `logger`'s child for the gateway: Authorization and Cookie headers are redacted. */
export function gatewayLogger(logger: Logger | undefined): Logger | undefined {
  return logger?.child(
    { component: 'gateway' },
    {
      redact: {
        paths: [
          'req.headers.authorization',
          'headers.authorization',
          'authorization',
          'req.headers.cookie',
        ],
        censor: '[redacted]',
      },
    },
  );
}

/** Logs every answered request at debug level (method, URL, status, time, token name). */
export function logRequests(app: FastifyInstance, ctx: GatewayContext): void {
  app.addHook('onResponse', (req, reply, done) => {
    req.log.debug(
      {
        reqId: req.id,
        method: req.method,
        url: req.url,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
        token: ctx.principals.get(req)?.name,
      },
      'request',
    );
    done();
  });
}
