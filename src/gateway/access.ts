/**
 * Who may call the gateway, as one `onRequest` hook on the root app, so it runs for every
 * route of every route module: the per-IP rate limit first (bad tokens count too), then the
 * bearer token and the route's roles, then the per-token rate limit; the body is read after
 * all of them. A route says who may call it in its config: `{ roles }` or `{ public: true }`.
 */
import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ANONYMOUS, Role, TokenVerifier, roleAllowed, type Principal } from './auth.js';
import type { GatewayContext } from './context.js';
import { GatewayErrorCode, HttpError } from './errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Roles that may call the route (admin may call every route; default: admin only). */
    roles?: readonly Role[];
    /** The route needs no token. */
    public?: boolean;
  }
}

/** Every role: a route any valid token may call. */
export const ANY_ROLE: readonly Role[] = [Role.Producer, Role.Worker, Role.Viewer, Role.Admin];

type Limiter = ReturnType<FastifyInstance['createRateLimit']>;

/**
 * Adds the access hook to `app` (the root instance: register route modules after it) and
 * records each request's caller in `ctx.principals`.
 */
export function checkAccess(app: FastifyInstance, ctx: GatewayContext): void {
  const verifier = new TokenVerifier(ctx.auth.tokens);
  const authDisabled = ctx.auth.disabled === true;
  const { principals } = ctx;
  let limiters: { ip: Limiter; token: Limiter } | undefined;

  app.addHook('onRequest', async (req) => {
    const access = req.routeOptions.config ?? {};
    if (access.public) return;
    limiters ??= {
      ip: app.createRateLimit({
        timeWindow: 1_000,
        max: ctx.limits.ipRateLimit,
        keyGenerator: (r) => `ip:${r.ip}`,
      }),
      token: app.createRateLimit({
        timeWindow: 1_000,
        max: (r) => principals.get(r)?.rateLimit ?? ctx.limits.rateLimit,
        keyGenerator: (r) => `token:${principals.get(r)?.name ?? ''}`,
      }),
    };
    await limit(limiters.ip, req, undefined);
    if (req.is404) return;
    let principal: Principal | undefined;
    if (authDisabled) principal = ANONYMOUS;
    else principal = verifier.verify(req.headers.authorization);
    if (!principal) {
      throw new HttpError(
        401,
        GatewayErrorCode.Unauthorized,
        req.headers.authorization === undefined
          ? 'missing bearer token (header "Authorization: Bearer TOKEN")'
          : 'invalid bearer token',
      );
    }
    const roles = access.roles ?? [Role.Admin];
    if (!roleAllowed(principal.role, roles)) {
      throw new HttpError(
        403,
        GatewayErrorCode.Forbidden,
        `token "${principal.name}" has role ${principal.role}; ${req.method} ${req.routeOptions.url} needs ${roles.join(' or ')}`,
      );
    }
    principals.set(req, principal);
    await limit(limiters.token, req, principal.name);
  });

  // The limiters are made in the hook above (createRateLimit); no route hooks.
  void app.register(rateLimit, { global: false });
}

/** Throws 429 (with Retry-After) when `req` is over `limiter`'s rate. */
async function limit(
  limiter: Limiter,
  req: FastifyRequest,
  who: string | undefined,
): Promise<void> {
  const r = await limiter(req);
  if (r.isAllowed || !r.isExceeded) return;
  throw new HttpError(
    429,
    GatewayErrorCode.RateLimited,
    `${who !== undefined ? `token "${who}"` : `client ${req.ip}`}: over ${r.max} requests per second; retry in ${r.ttlInSeconds} s`,
    { retryAfterS: Math.max(1, r.ttlInSeconds) },
  );
}
