import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Broker, Delivery } from '../../src/broker/contract.js';
import { loadTokenFile, tokenDigest } from '../../src/gateway/auth.js';
import { serveStatusRequests } from '../../src/worker/control.js';
import { decode } from '../../src/protocol/codec.js';
import type { Envelope } from '../../src/protocol/envelope.js';
import { sleep, waitFor } from '../support/wait.js';
import { FaultBroker } from './fault-broker.js';
import {
  TOKENS,
  call,
  errorCodeOf,
  errorMessageOf,
  startGateway,
  tokenEntries,
  type TestGateway,
} from './helpers.js';

const gateways: TestGateway[] = [];
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.close()));
});

async function gateway(...args: Parameters<typeof startGateway>): Promise<TestGateway> {
  const g = await startGateway(...args);
  gateways.push(g);
  return g;
}

let seq = 0;
function queueName(label: string): string {
  return `gw.${label}.${process.pid}.${++seq}`;
}

/** Takes every message of `queue` off the broker and decodes its envelope. */
async function drain(broker: Broker, queue: string, expected: number): Promise<Envelope[]> {
  const got: Envelope[] = [];
  const seen: Delivery[] = [];
  const consumer = await broker.consume(
    queue,
    async (d) => {
      seen.push(d);
      got.push(decode(d.body));
      await d.ack();
    },
    { prefetch: 500 },
  );
  await waitFor(() => got.length >= expected, 15_000, `${expected} messages of "${queue}"`);
  // Every message acked and none left: nothing more can arrive.
  await waitFor(
    async () => {
      const stats = await broker.stats(queue);
      return stats.ready === 0 && stats.inFlight === 0 && stats.delayed === 0;
    },
    15_000,
    `"${queue}" to be empty`,
  );
  await consumer.cancel();
  return got;
}

describe('gateway: authentication and roles', () => {
  it('answers 401 with WWW-Authenticate without a token or with an unknown one', async () => {
    const g = await gateway();
    const q = queueName('auth');
    const none = await call(g.url, 'POST', `/v1/queues/${q}/tasks`, { json: [1] });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect(errorCodeOf(none)).toBe('UNAUTHORIZED');
    const wrong = await call(g.url, 'GET', '/v1/queues', { token: 'not-a-known-token-at-all' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expect((await g.broker.stats(q)).ready).toBe(0);
  });

  it('answers 403 when the role may not call the endpoint, and lets admin call everything', async () => {
    const g = await gateway();
    const q = queueName('roles');
    const workerIngest = await call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
      token: TOKENS.worker,
      json: [1],
    });
    expect(workerIngest.status).toBe(403);
    expect(errorCodeOf(workerIngest)).toBe('FORBIDDEN');
    const producerLease = await call(g.url, 'POST', `/v1/queues/${q}/leases`, {
      token: TOKENS.producer,
      json: { max: 1 },
    });
    expect(producerLease.status).toBe(403);
    const producerDelete = await call(g.url, 'DELETE', `/v1/queues/${q}`, {
      token: TOKENS.producer,
    });
    expect(producerDelete.status).toBe(403);
    const adminIngest = await call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
      token: TOKENS.admin,
      json: [1],
    });
    expect(adminIngest.status).toBe(200);
    const adminLease = await call(g.url, 'POST', `/v1/queues/${q}/leases`, {
      token: TOKENS.admin,
      json: { max: 1 },
    });
    expect(adminLease.status).toBe(200);
    const who = await call(g.url, 'GET', '/v1/token', { token: TOKENS.worker });
    // With what the broker behind the gateway can do, for the GatewayBroker client's capabilities.
    expect(who.json).toEqual({
      name: 'wendy',
      role: 'worker',
      broker: { purge: true, pause: true },
    });
  });

  it('serves /healthz and /openapi.json without a token, the document naming every route', async () => {
    const g = await gateway();
    const health = await call(g.url, 'GET', '/healthz');
    expect(health.status).toBe(200);
    const doc = await call(g.url, 'GET', '/openapi.json');
    expect(doc.status).toBe(200);
    const paths = (doc.json as { openapi: string; paths: Record<string, Record<string, unknown>> })
      .paths;
    expect((doc.json as { openapi: string }).openapi).toMatch(/^3\./);
    let operations = 0;
    for (const [path, item] of Object.entries(paths)) {
      for (const method of Object.keys(item)) {
        if (method === 'parameters') continue;
        operations++;
        const url = path.replace(/\{(\w+)\}/g, ':$1');
        expect(
          g.app.hasRoute({ method: method.toUpperCase() as 'GET', url }),
          `${method} ${path}`,
        ).toBe(true);
      }
    }
    expect(operations).toBe(40);
  });

  it('accepts tokens stored as sha256 in a tokens file and applies per-token rate limits (429 with Retry-After)', async () => {
    const g0 = await gateway();
    const file = join(g0.dir, 'tokens.yaml');
    const secret = 'hashed-secret-0123456789abcdef';
    writeFileSync(
      file,
      [
        'tokens:',
        `  - name: hashed`,
        `    role: producer`,
        `    sha256: ${tokenDigest(secret).toString('hex')}`,
        `    rateLimit: 3`,
      ].join('\n'),
    );
    const g = await gateway({ auth: { tokens: [...loadTokenFile(file), ...tokenEntries()] } });
    const statuses: number[] = [];
    let limited: Awaited<ReturnType<typeof call>> | undefined;
    for (let i = 0; i < 8; i++) {
      const res = await call(g.url, 'GET', '/v1/token', { token: secret });
      statuses.push(res.status);
      if (res.status === 429) limited = res;
    }
    expect(statuses.slice(0, 3)).toEqual([200, 200, 200]);
    expect(limited, `statuses ${statuses.join(',')}`).toBeDefined();
    expect(errorCodeOf(limited!)).toBe('RATE_LIMITED');
    expect(Number(limited!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    // Other tokens have their own budget.
    expect((await call(g.url, 'GET', '/v1/token', { token: TOKENS.producer })).status).toBe(200);
  });
});

describe('gateway: bad input', () => {
  it('answers 413 over the body limit and publishes nothing', async () => {
    const g = await gateway({ bodyLimit: 1024 });
    const q = queueName('limit');
    const big = JSON.stringify(Array.from({ length: 200 }, (_, i) => ({ i, pad: 'xxxxxxxx' })));
    const res = await call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
      token: TOKENS.producer,
      body: big,
    });
    expect(res.status).toBe(413);
    expect(errorCodeOf(res)).toBe('PAYLOAD_TOO_LARGE');
    expect(errorMessageOf(res)).toMatch(/over the gateway.s limit of 1024 bytes/);
    expect((await g.broker.stats(q)).ready).toBe(0);
  });

  it('answers 400 naming the byte offset and line of a malformed JSON array, publishing nothing', async () => {
    const g = await gateway();
    const q = queueName('bad-array');
    const body = '[\n  {"a": 1},\n  {"b": 2,, "c": 3}\n]';
    const res = await call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
      token: TOKENS.producer,
      body,
    });
    expect(res.status).toBe(400);
    expect(errorCodeOf(res)).toBe('MALFORMED_JSON');
    const offset = body.indexOf(',,') + 1;
    expect(errorMessageOf(res)).toContain(`byte ${offset}`);
    expect(errorMessageOf(res)).toContain('line 3');
    expect((await g.broker.stats(q)).ready).toBe(0);
  });

  it('answers 400 naming the line and column of a malformed NDJSON line, publishing nothing', async () => {
    const g = await gateway();
    const q = queueName('bad-ndjson');
    const body = '{"n": 1}\n{"n": 2}\n\n{"n": 3, oops}\n{"n": 5}\n';
    const res = await call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
      token: TOKENS.producer,
      body,
      contentType: 'application/x-ndjson',
    });
    expect(res.status).toBe(400);
    expect(errorCodeOf(res)).toBe('MALFORMED_JSON');
    expect(errorMessageOf(res)).toContain('line 4');
    expect(errorMessageOf(res)).toContain('column 10');
    expect((await g.broker.stats(q)).ready).toBe(0);
  });

  it('answers 400 for a body that is not an array, a payload without the key field, and a bad lease request', async () => {
    const g = await gateway();
    const q = queueName('bad-shape');
    const obj = await call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
      token: TOKENS.producer,
      json: { not: 'an array' },
    });
    expect(obj.status).toBe(400);
    expect(errorCodeOf(obj)).toBe('BAD_INPUT');
    const noKey = await call(g.url, 'POST', `/v1/queues/${q}/tasks?key=id`, {
      token: TOKENS.producer,
      json: [{ id: 'a' }, { other: 1 }],
    });
    expect(noKey.status).toBe(400);
    expect(errorMessageOf(noKey)).toContain('item 1');
    const lease = await call(g.url, 'POST', `/v1/queues/${q}/leases`, {
      token: TOKENS.worker,
      json: { max: 5000 },
    });
    expect(lease.status).toBe(400);
    expect(errorMessageOf(lease)).toContain('"max"');
    expect((await g.broker.stats(q)).ready).toBe(0);
  });

  it('answers 415 for a content type it does not read', async () => {
    const g = await gateway();
    const res = await call(g.url, 'POST', `/v1/queues/${queueName('type')}/tasks`, {
      token: TOKENS.producer,
      body: 'a,b\n1,2\n',
      contentType: 'text/csv',
    });
    expect(res.status).toBe(415);
    expect(errorCodeOf(res)).toBe('UNSUPPORTED_MEDIA_TYPE');
  });
});

describe('gateway: backpressure and broker state', () => {
  it('answers 503 with Retry-After while more messages than maxPendingPublishes wait for confirmation', async () => {
    let fault: FaultBroker | undefined;
    const g = await gateway({ maxPendingPublishes: 2 }, (b) => (fault = new FaultBroker(b)));
    const q = queueName('pending');
    // Declare first so the held publish is the only thing waiting.
    await call(g.url, 'POST', `/v1/queues/${q}/tasks`, { token: TOKENS.producer, json: [] });
    const open = fault!.holdPublishes();
    const first = call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
      token: TOKENS.producer,
      json: [1, 2],
    });
    let second: Awaited<ReturnType<typeof call>> | undefined;
    for (let i = 0; i < 100 && second?.status !== 503; i++) {
      await sleep(20);
      second = await call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
        token: TOKENS.producer,
        json: [3],
      });
    }
    expect(second?.status).toBe(503);
    expect(errorCodeOf(second!)).toBe('OVERLOADED');
    expect(Number(second!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    open();
    const done = await first;
    expect(done.status).toBe(200);
    expect((done.json as { accepted: number }).accepted).toBe(2);
    expect((await g.broker.stats(q)).ready).toBe(2);
  });

  it('answers 503 with Retry-After while the broker is reconnecting, and serves again once connected', async () => {
    let fault: FaultBroker | undefined;
    const g = await gateway({}, (b) => (fault = new FaultBroker(b)));
    const q = queueName('reconnecting');
    fault!.setStatus('reconnecting');
    const down = await call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
      token: TOKENS.producer,
      json: [1],
    });
    expect(down.status).toBe(503);
    expect(errorCodeOf(down)).toBe('BROKER_UNAVAILABLE');
    expect(down.headers.get('retry-after')).toBe('1');
    expect((await call(g.url, 'GET', '/healthz')).status).toBe(503);
    fault!.setStatus('connected');
    const up = await call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
      token: TOKENS.producer,
      json: [1],
    });
    expect(up.status).toBe(200);
  });
});

describe('gateway: ingest', () => {
  it('turns a JSON array into task envelopes with results to <queue>.results and keys from ?key=', async () => {
    const g = await gateway();
    const q = queueName('array');
    const payloads = Array.from({ length: 2500 }, (_, i) => ({ id: `k${i}`, n: i }));
    const res = await call(g.url, 'POST', `/v1/queues/${q}/tasks?key=id`, {
      token: TOKENS.producer,
      json: payloads,
    });
    expect(res.status).toBe(200);
    const answer = res.json as { accepted: number; ids: string[] };
    expect(answer.accepted).toBe(2500);
    expect(new Set(answer.ids).size).toBe(2500);
    expect(await g.broker.listQueues()).toContain(`${q}.results`);
    const envelopes = await drain(g.broker, q, 2500);
    expect(envelopes).toHaveLength(2500);
    const byId = new Map(envelopes.map((e) => [e.id, e]));
    expect([...byId.keys()].sort()).toEqual([...answer.ids].sort());
    const first = byId.get(answer.ids[0]!)!;
    expect(first.type).toBe('task');
    expect(first.payload).toEqual({ id: 'k0', n: 0 });
    expect(first.key).toBe('k0');
    expect(first.replyTo).toBe(`${q}.results`);
    expect(byId.get(answer.ids[2499]!)!.key).toBe('k2499');
  });

  it('reads NDJSON, one payload per line, skipping blank lines and accepting CRLF', async () => {
    const g = await gateway();
    const q = queueName('ndjson');
    const body = '{"p": 1}\r\n"two"\n\n[3]\n{"p": {"nested": true}}\n';
    const res = await call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
      token: TOKENS.producer,
      body,
      contentType: 'application/x-ndjson',
    });
    expect(res.status).toBe(200);
    const answer = res.json as { accepted: number; ids: string[] };
    expect(answer.accepted).toBe(4);
    const envelopes = await drain(g.broker, q, 4);
    const payloads = answer.ids.map((id) => envelopes.find((e) => e.id === id)?.payload);
    expect(payloads).toEqual([{ p: 1 }, 'two', [3], { p: { nested: true } }]);
  });

  it('publishes once for a repeated Idempotency-Key and replays the stored answer', async () => {
    const g = await gateway();
    const q = queueName('idem');
    const send = (json: unknown, key = 'batch-7') =>
      call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
        token: TOKENS.producer,
        json,
        headers: { 'idempotency-key': key },
      });
    const first = await send([{ a: 1 }, { a: 2 }, { a: 3 }]);
    expect(first.status).toBe(200);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const again = await send([{ a: 1 }, { a: 2 }, { a: 3 }]);
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.json).toEqual(first.json);
    expect((await g.broker.stats(q)).ready).toBe(3);
    const reused = await send([{ a: 'different' }]);
    expect(reused.status).toBe(422);
    expect(errorCodeOf(reused)).toBe('IDEMPOTENCY_KEY_REUSED');
    expect((await g.broker.stats(q)).ready).toBe(3);
    // Ids derive from the token name, the key and the index: the same on another gateway.
    const other = await gateway();
    const there = await call(other.url, 'POST', `/v1/queues/${q}/tasks`, {
      token: TOKENS.producer,
      json: [{ a: 1 }, { a: 2 }, { a: 3 }],
      headers: { 'idempotency-key': 'batch-7' },
    });
    expect((there.json as { ids: string[] }).ids).toEqual((first.json as { ids: string[] }).ids);
  });

  it('publishes raw messages, declares queues and reports adjusted stats', async () => {
    const g = await gateway();
    const q = queueName('raw');
    const put = await call(g.url, 'PUT', `/v1/queues/${q}`, {
      token: TOKENS.worker,
      json: { maxDeliveries: 2, leaseMs: 5000 },
    });
    expect(put.status).toBe(204);
    const pub = await call(g.url, 'POST', `/v1/queues/${q}/messages`, {
      token: TOKENS.worker,
      json: {
        messages: [
          { id: 'm1', body: 'hello', headers: { h: 1 } },
          { body: 'x', delayMs: 60000 },
        ],
      },
    });
    expect(pub.status).toBe(200);
    expect((pub.json as { ids: string[] }).ids[0]).toBe('m1');
    const stats = await call(g.url, 'GET', `/v1/queues/${q}`, { token: TOKENS.producer });
    expect(stats.json).toMatchObject({ queue: q, ready: 1, delayed: 1, inFlight: 0 });
    const list = await call(g.url, 'GET', '/v1/queues', { token: TOKENS.producer });
    expect((list.json as { queues: { queue: string }[] }).queues.map((s) => s.queue)).toContain(q);
  });
});

describe('gateway: logs', () => {
  it('never writes a token to its logs, valid or not', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    const logger = pino({ level: 'trace' }, sink);
    const g = await gateway({ logger });
    const q = queueName('logs');
    const wrongToken = 'wrong-secret-0123456789abcdef';
    await call(g.url, 'POST', `/v1/queues/${q}/tasks`, { token: TOKENS.producer, json: [1] });
    await call(g.url, 'POST', `/v1/queues/${q}/tasks`, { token: TOKENS.producer, body: '[1,' });
    await call(g.url, 'POST', `/v1/queues/${q}/tasks`, { token: wrongToken, json: [1] });
    await call(g.url, 'POST', `/v1/queues/${q}/leases`, {
      token: TOKENS.producer,
      json: { max: 1 },
    });
    await call(g.url, 'POST', `/v1/leases/nope/ack`, { token: TOKENS.worker });
    const text = lines.join('');
    // The logs name who called, so a leak of the secret next to it would show.
    expect(text).toContain('"token":"alice"');
    expect(text).toContain('"status":401');
    for (const secret of [...Object.values(TOKENS), wrongToken]) expect(text).not.toContain(secret);
  });
});

describe('gateway: status', () => {
  it('answers job and experiment lookups through the injected providers, 404 for unknown names', async () => {
    const bare = await gateway();
    const none = await call(bare.url, 'GET', '/v1/jobs/anything', { token: TOKENS.worker });
    expect(none.status).toBe(404);
    expect(errorCodeOf(none)).toBe('NOT_FOUND');
    const g = await gateway({
      status: {
        job: async (name) => (name === 'nightly' ? { name, items: { done: 3 } } : undefined),
        experiment: async (name) =>
          name === 'mnist' ? { name, trials: { complete: 7 } } : undefined,
      },
    });
    const job = await call(g.url, 'GET', '/v1/jobs/nightly', { token: TOKENS.producer });
    expect(job.status).toBe(200);
    expect(job.json).toEqual({ name: 'nightly', items: { done: 3 } });
    const exp = await call(g.url, 'GET', '/v1/experiments/mnist', { token: TOKENS.worker });
    expect(exp.json).toEqual({ name: 'mnist', trials: { complete: 7 } });
    expect(
      (await call(g.url, 'GET', '/v1/experiments/other', { token: TOKENS.worker })).status,
    ).toBe(404);
  });

  it('gathers the reports of workers connected to the broker on GET /v1/workers', async () => {
    const g = await gateway();
    const report = {
      worker: { host: 'gpu-1', pid: 42, id: 'gpu-1:42:ab' },
      queue: 'q',
      startedAt: Date.now(),
      done: 5,
      failed: 0,
      deadLettered: 0,
      inFlight: 1,
      rate: 2,
    };
    const control = await serveStatusRequests(g.broker, () => report);
    try {
      const res = await call(g.url, 'GET', '/v1/workers?waitMs=500', { token: TOKENS.producer });
      expect(res.status).toBe(200);
      expect((res.json as { workers: unknown[] }).workers).toEqual([report]);
      const bad = await call(g.url, 'GET', '/v1/workers?waitMs=soon', { token: TOKENS.producer });
      expect(bad.status).toBe(400);
    } finally {
      await control.cancel();
    }
  });
});
