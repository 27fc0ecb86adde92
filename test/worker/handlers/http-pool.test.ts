import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ErrorCode, TaskError } from '../../../src/protocol/errors.js';
import { HttpEndpointPool, httpPoolHandler } from '../../../src/worker/handlers/http-pool.js';
import { deferred, fakeContext } from '../helpers.js';

type Respond = (req: IncomingMessage, body: string, res: ServerResponse) => void | Promise<void>;

interface TestServer {
  url: string;
  /** Request bodies received, in order. */
  bodies: string[];
  server: Server;
}

const servers: Server[] = [];

async function startServer(respond: Respond): Promise<TestServer> {
  const bodies: string[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      bodies.push(body);
      void respond(req, body, res);
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/v1/run`, bodies, server };
}

/** A URL on which nothing listens (a port just freed). */
async function closedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/`;
}

function json(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

const echo: Respond = (_req, body, res) => json(res, 200, { echo: JSON.parse(body) as unknown });

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
});

describe('httpPoolHandler', () => {
  it('POSTs the payload as JSON and returns the parsed JSON response', async () => {
    const a = await startServer(echo);
    const handler = httpPoolHandler([a.url]);
    await expect(handler({ prompt: 'hello' }, fakeContext())).resolves.toEqual({
      echo: { prompt: 'hello' },
    });
    expect(a.bodies).toEqual(['{"prompt":"hello"}']);
  });

  it('returns the text of a non-JSON response', async () => {
    const a = await startServer((_req, _body, res) => void res.end('just text'));
    await expect(httpPoolHandler([a.url])({}, fakeContext())).resolves.toBe('just text');
  });

  it('spreads concurrent requests across slow endpoints by outstanding count', async () => {
    const gate = deferred();
    const slow: Respond = async (_req, body, res) => {
      await gate.promise;
      json(res, 200, JSON.parse(body) as unknown);
    };
    const a = await startServer(slow);
    const b = await startServer(slow);
    const handler = httpPoolHandler([a.url, b.url]);
    const calls = [1, 2, 3, 4].map((i) => handler({ i }, fakeContext()));
    await vi.waitFor(() => expect(a.bodies.length + b.bodies.length).toBe(4), { timeout: 5_000 });
    expect(a.bodies).toHaveLength(2);
    expect(b.bodies).toHaveLength(2);
    gate.resolve();
    await expect(Promise.all(calls)).resolves.toEqual([{ i: 1 }, { i: 2 }, { i: 3 }, { i: 4 }]);
  });

  it('sends new requests to the endpoint with fewer outstanding, not in strict rotation', async () => {
    const gate = deferred();
    const a = await startServer(async (_req, body, res) => {
      await gate.promise;
      json(res, 200, JSON.parse(body) as unknown);
    });
    const b = await startServer(echo);
    const pool = new HttpEndpointPool([a.url, b.url]);
    const held = pool.request({ i: 1 });
    await vi.waitFor(() => expect(a.bodies).toHaveLength(1), { timeout: 5_000 });
    for (const i of [2, 3, 4]) await pool.request({ i });
    // a still has one outstanding request, so b took the next three.
    expect(a.bodies).toHaveLength(1);
    expect(b.bodies).toHaveLength(3);
    expect(pool.snapshot().map((e) => e.outstanding)).toEqual([1, 0]);
    gate.resolve();
    await expect(held).resolves.toEqual({ i: 1 });
  });

  it('keeps an endpoint that failed once in rotation, failing its request over', async () => {
    let calls = 0;
    const a = await startServer((_req, body, res) => {
      if (++calls === 1) json(res, 503, { error: 'overloaded' });
      else json(res, 200, { echo: JSON.parse(body) as unknown });
    });
    const b = await startServer(echo);
    const pool = new HttpEndpointPool([a.url, b.url]);
    for (const n of [1, 2, 3, 4])
      await expect(pool.request({ n })).resolves.toEqual({ echo: { n } });
    // a failed n=1 (which b then served) and still took n=2 and n=4.
    expect(a.bodies).toEqual(['{"n":1}', '{"n":2}', '{"n":4}']);
    expect(b.bodies).toEqual(['{"n":1}', '{"n":3}']);
    expect(pool.snapshot()[0]).toMatchObject({
      state: 'up',
      failed: 1,
      succeeded: 2,
      consecutiveFailures: 0,
    });
  });

  it('opens an endpoint after consecutive failures and sends it nothing while it cools down', async () => {
    const a = await startServer((_req, _body, res) => json(res, 500, { error: 'cuda oom' }));
    const b = await startServer(echo);
    const pool = new HttpEndpointPool([a.url, b.url], {
      breaker: { failures: 3, cooldownMs: 60_000 },
    });
    for (let n = 0; n < 20; n++) await pool.request({ n });
    expect(a.bodies).toHaveLength(3);
    expect(b.bodies).toHaveLength(20);
    const [stateA] = pool.snapshot();
    expect(stateA).toMatchObject({ state: 'open', failed: 3, opened: 1 });
    expect(stateA!.reason).toBe('3 consecutive failures');
    expect(stateA!.retryAt).toBeGreaterThan(Date.now());
  });

  it('serves a fair share from an endpoint that fails 5 % of its requests', async () => {
    let calls = 0;
    const flaky = await startServer((_req, body, res) => {
      if (++calls % 20 === 0) json(res, 500, { error: 'transient' });
      else json(res, 200, JSON.parse(body) as unknown);
    });
    const steady = await startServer((_req, body, res) =>
      json(res, 200, JSON.parse(body) as unknown),
    );
    const pool = new HttpEndpointPool([flaky.url, steady.url]);
    const total = 600;
    let next = 0;
    const lane = async () => {
      while (next < total) {
        const n = next++;
        await expect(pool.request({ n })).resolves.toEqual({ n });
      }
    };
    await Promise.all([lane(), lane(), lane(), lane()]);
    const [a, b] = pool.snapshot();
    expect(a!.succeeded + b!.succeeded).toBe(total);
    expect(a!.failed).toBeGreaterThan(0);
    // Ejected for a while after each failure, it would serve only a sliver of the work.
    expect(a!.succeeded / total).toBeGreaterThanOrEqual(0.4);
    expect(a!.state).toBe('up');
  });

  it('waits for an open endpoint to cool down and probes it instead of failing the task', async () => {
    let calls = 0;
    const a = await startServer((_req, body, res) => {
      if (++calls <= 2) json(res, 500, { error: 'loading model' });
      else json(res, 200, JSON.parse(body) as unknown);
    });
    const pool = new HttpEndpointPool([a.url], { breaker: { failures: 2, cooldownMs: 50 } });
    await expect(pool.request({ n: 1 })).rejects.toThrow(/HTTP 500/);
    await expect(pool.request({ n: 2 })).rejects.toThrow(/HTTP 500/);
    expect(pool.snapshot()[0]!.state).toBe('open');
    // Open: the next requests wait; one probe goes through, succeeds and lets the rest follow.
    await expect(Promise.all([3, 4, 5].map((n) => pool.request({ n })))).resolves.toEqual([
      { n: 3 },
      { n: 4 },
      { n: 5 },
    ]);
    expect(a.bodies).toHaveLength(5);
    expect(pool.snapshot()[0]).toMatchObject({ state: 'up', opened: 1 });
  });

  it('rejects with the abort reason while waiting for an open endpoint', async () => {
    const a = await startServer((_req, _body, res) => json(res, 500, {}));
    const pool = new HttpEndpointPool([a.url], { breaker: { failures: 1, cooldownMs: 60_000 } });
    await expect(pool.request({})).rejects.toThrow(/HTTP 500/);
    const controller = new AbortController();
    const call = pool.request({}, controller.signal);
    const reason = new TaskError(ErrorCode.Timeout, 'time limit');
    controller.abort(reason);
    await expect(call).rejects.toBe(reason);
    expect(a.bodies).toHaveLength(1);
  });

  it('names an open endpoint in the error of a request that failed on the others', async () => {
    const a = await startServer((_req, _body, res) => json(res, 500, { error: 'a down' }));
    const b = await startServer((_req, _body, res) => json(res, 502, { error: 'b down' }));
    const pool = new HttpEndpointPool([a.url, b.url], {
      breaker: { failures: 1, cooldownMs: 60_000 },
    });
    await expect(pool.request({})).rejects.toThrow(/HTTP 500.*HTTP 502/);
    // Both open: waits would follow, so check the snapshot instead of sending more.
    expect(pool.snapshot().map((e) => e.state)).toEqual(['open', 'open']);
  });

  it('fails over when an endpoint refuses connections', async () => {
    const dead = await closedPortUrl();
    const b = await startServer(echo);
    const handler = httpPoolHandler([dead, b.url]);
    await expect(handler({ n: 1 }, fakeContext())).resolves.toEqual({ echo: { n: 1 } });
    expect(b.bodies).toHaveLength(1);
  });

  it('fails a 4xx at once with the body in the message and no failover', async () => {
    const a = await startServer((_req, _body, res) => json(res, 400, { error: 'prompt too long' }));
    const b = await startServer(echo);
    const handler = httpPoolHandler([a.url, b.url]);
    const error = (await handler({}, fakeContext()).catch((e: unknown) => e)) as TaskError;
    expect(error).toBeInstanceOf(TaskError);
    expect(error.code).toBe(ErrorCode.HandlerFailed);
    expect(error.retry).toBe(false);
    expect(error.message).toContain('HTTP 400');
    expect(error.message).toContain('prompt too long');
    expect(b.bodies).toHaveLength(0);
  });

  it('names every endpoint when all of them fail, trying each once', async () => {
    const a = await startServer((_req, _body, res) => json(res, 500, { error: 'cuda oom' }));
    const dead = await closedPortUrl();
    const handler = httpPoolHandler([a.url, dead]);
    const error = (await handler({}, fakeContext()).catch((e: unknown) => e)) as TaskError;
    expect(error).toBeInstanceOf(TaskError);
    expect(error.retry).toBe(true);
    expect(error.message).toContain(`${a.url}: HTTP 500`);
    expect(error.message).toContain('cuda oom');
    expect(error.message).toContain(dead);
    expect(error.message).toContain('ECONNREFUSED');
    expect(a.bodies).toHaveLength(1);
  });

  it('rejects with the abort reason when the task signal aborts, without failing over', async () => {
    const never = deferred();
    const a = await startServer(async (_req, _body, res) => {
      await never.promise;
      res.end('late');
    });
    const b = await startServer(echo);
    const controller = new AbortController();
    const call = httpPoolHandler([a.url, b.url])({}, fakeContext({ signal: controller.signal }));
    await vi.waitFor(() => expect(a.bodies).toHaveLength(1), { timeout: 5_000 });
    const reason = new TaskError(ErrorCode.Timeout, 'time limit');
    controller.abort(reason);
    await expect(call).rejects.toBe(reason);
    expect(b.bodies).toHaveLength(0);
    never.resolve();
  });

  it('rejects an empty endpoint list, a malformed URL and a scheme other than http(s)', () => {
    expect(() => httpPoolHandler([])).toThrow(/at least one endpoint/);
    expect(() => httpPoolHandler(['not a url'])).toThrow(/"not a url" is not a URL/);
    expect(() => httpPoolHandler(['ftp://models/v1'])).toThrow(
      /"ftp:\/\/models\/v1" has scheme "ftp:"; expected http:\/\/ or https:\/\//,
    );
    // "localhost:8000" parses as a URL with the scheme "localhost:".
    expect(() => httpPoolHandler(['localhost:8000/v1'])).toThrow(/scheme "localhost:"/);
    expect(() => httpPoolHandler(['gopher://user:secret@models/'])).toThrow(
      /"gopher:\/\/user:\*\*\*@models\/" has scheme "gopher:"/,
    );
  });
});
