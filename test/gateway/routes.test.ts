import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryBroker } from '../../src/broker/memory/index.js';
import { Role } from '../../src/gateway/auth.js';
import { createGateway } from '../../src/gateway/gateway.js';
import { TOKENS, tokenEntries } from './helpers.js';

// The access hook sits on the root instance and every route module is a plugin under it: these
// tests enumerate the routes the modules registered, so a new module is covered without edits.

interface RouteSeen {
  method: string;
  url: string;
  roles: readonly Role[] | undefined;
  public: boolean;
}

const opened: { app: FastifyInstance; broker: MemoryBroker }[] = [];
afterEach(async () => {
  for (const { app, broker } of opened.splice(0)) {
    await app.close();
    await broker.close();
  }
});

/** A gateway (not listening) and every route it registered, HEAD routes left out. */
async function gatewayRoutes(): Promise<{ app: FastifyInstance; routes: RouteSeen[] }> {
  const broker = new MemoryBroker();
  const app = createGateway({ broker, auth: { tokens: tokenEntries() } });
  opened.push({ app, broker });
  const routes: RouteSeen[] = [];
  app.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) {
      if (method === 'HEAD') continue;
      routes.push({
        method,
        url: r.url,
        roles: r.config?.roles,
        public: r.config?.public === true,
      });
    }
  });
  await app.ready();
  return { app, routes };
}

/** The route's path with every parameter filled in. */
function pathOf(url: string): string {
  return url.replace(/:[A-Za-z]+/g, 'x');
}

describe('gateway route modules', () => {
  it("refuses every route without a token (401) except /healthz, /openapi.json and the dashboard's static files", async () => {
    const { app, routes } = await gatewayRoutes();
    expect(routes.length).toBeGreaterThan(20);
    expect(routes.filter((r) => r.public).map((r) => r.url)).toEqual([
      '/healthz',
      '/openapi.json',
      '/',
      '/dashboard/uplot/:file',
      '/dashboard/:file',
    ]);
    // A real file for each static route: the page, its script, uPlot's script.
    const FILES: Record<string, string> = {
      '/dashboard/:file': '/dashboard/app.js',
      '/dashboard/uplot/:file': '/dashboard/uplot/uPlot.esm.js',
    };
    for (const r of routes) {
      const res = await app.inject({
        method: r.method as 'GET',
        url: FILES[r.url] ?? pathOf(r.url),
      });
      if (r.public) expect(res.statusCode, `${r.method} ${r.url}`).toBe(200);
      else {
        expect(res.statusCode, `${r.method} ${r.url}`).toBe(401);
        expect(res.headers['www-authenticate']).toBe('Bearer realm="qtune"');
      }
    }
  });

  it("lets a token through to each route exactly when the route's roles allow its role", async () => {
    const { app, routes } = await gatewayRoutes();
    const tokens = [
      [Role.Producer, TOKENS.producer],
      [Role.Worker, TOKENS.worker],
      [Role.Admin, TOKENS.admin],
    ] as const;
    for (const r of routes.filter((x) => !x.public)) {
      for (const [role, token] of tokens) {
        const res = await app.inject({
          method: r.method as 'GET',
          url: pathOf(r.url),
          headers: { authorization: `Bearer ${token}` },
        });
        const refusedByHook =
          res.statusCode === 403 &&
          (res.json() as { error: { message: string } }).error.message.includes(' needs ');
        const allowed = role === Role.Admin || (r.roles ?? [Role.Admin]).includes(role);
        expect(refusedByHook, `${role} on ${r.method} ${r.url}`).toBe(!allowed);
      }
    }
  });
});
