import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Broker, Delivery } from '../../src/broker/contract.js';
import { join } from 'node:path';
import { GatewayBroker } from '../../src/broker/gateway/index.js';
import { parseTokenList } from '../../src/gateway/auth.js';
import { storeJobs } from '../../src/gateway/jobs.js';
import { jobStatus } from '../../src/job/status.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import {
  gatherWorkerReports,
  serveStatusRequests,
  type WorkerReport,
} from '../../src/worker/control.js';
import { decode } from '../../src/protocol/codec.js';
import { BrokerError, ErrorCode } from '../../src/protocol/errors.js';
import { waitFor } from '../support/wait.js';
import { FaultBroker } from './fault-broker.js';
import {
  TOKENS,
  TOKENS_ENV,
  call,
  errorCodeOf,
  errorMessageOf,
  startGateway,
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

/** A second worker and a second producer token next to the usual three. */
const OTHER = {
  worker: 'other-worker-secret-0123456789',
  producer: 'other-producer-secret-01234567',
} as const;
const twoOfEach = () => ({
  auth: {
    tokens: parseTokenList(
      `${TOKENS_ENV},walt:worker:${OTHER.worker},paul:producer:${OTHER.producer}`,
    ),
  },
});

let seq = 0;
function queueName(label: string): string {
  return `hard.${label}.${process.pid}.${++seq}`;
}

async function count(broker: Broker, queue: string): Promise<number> {
  const s = await broker.stats(queue);
  return s.ready + s.delayed + s.inFlight;
}

describe('gateway: queue ownership', () => {
  it('refuses to make an existing durable queue temporary (409) and keeps non-admins from deleting it', async () => {
    const g = await gateway();
    const q = queueName('durable');
    const ingest = await call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
      token: TOKENS.producer,
      json: [1, 2, 3],
    });
    expect(ingest.status).toBe(200);
    const redeclare = await call(g.url, 'PUT', `/v1/queues/${q}`, {
      token: TOKENS.worker,
      json: { temporary: true },
    });
    expect(redeclare.status).toBe(409);
    expect(errorCodeOf(redeclare)).toBe('QUEUE_MISMATCH');
    for (const token of [TOKENS.worker, TOKENS.producer]) {
      const del = await call(g.url, 'DELETE', `/v1/queues/${q}`, { token });
      expect(del.status).toBe(403);
      expect(errorCodeOf(del)).toBe('FORBIDDEN');
    }
    expect(await count(g.broker, q)).toBe(3);
  });

  it('refuses to re-declare a queue with another lease (409) and accepts a declaration that agrees', async () => {
    const g = await gateway();
    const q = queueName('lease');
    const first = await call(g.url, 'PUT', `/v1/queues/${q}`, {
      token: TOKENS.worker,
      json: { leaseMs: 30_000 },
    });
    expect(first.status).toBe(204);
    const same = await call(g.url, 'PUT', `/v1/queues/${q}`, {
      token: TOKENS.producer,
      json: { leaseMs: 30_000 },
    });
    expect(same.status).toBe(204);
    const plain = await call(g.url, 'PUT', `/v1/queues/${q}`, { token: TOKENS.producer });
    expect(plain.status).toBe(204);
    const other = await call(g.url, 'PUT', `/v1/queues/${q}`, {
      token: TOKENS.producer,
      json: { leaseMs: 5_000 },
    });
    expect(other.status).toBe(409);
    expect(errorCodeOf(other)).toBe('QUEUE_MISMATCH');
    expect(errorMessageOf(other)).toMatch(/leaseMs 30000; declared with 5000/);
  });

  it('lets only the token that declared a temporary queue (or admin) delete it', async () => {
    const g = await gateway(twoOfEach());
    const q = queueName('temp');
    const mine = await call(g.url, 'PUT', `/v1/queues/${q}`, {
      token: TOKENS.worker,
      json: { temporary: true, durable: false },
    });
    expect(mine.status).toBe(204);
    const stolen = await call(g.url, 'PUT', `/v1/queues/${q}`, {
      token: OTHER.worker,
      json: { temporary: true, durable: false },
    });
    expect(stolen.status).toBe(409);
    const otherDelete = await call(g.url, 'DELETE', `/v1/queues/${q}`, { token: OTHER.worker });
    expect(otherDelete.status).toBe(403);
    expect(errorCodeOf(otherDelete)).toBe('FORBIDDEN');
    expect(await g.broker.listQueues()).toContain(q);
    const ownDelete = await call(g.url, 'DELETE', `/v1/queues/${q}`, { token: TOKENS.worker });
    expect(ownDelete.status).toBe(204);
    expect(await g.broker.listQueues()).not.toContain(q);
  });

  it("refuses to cancel another token's consumer (403) and lets its owner or admin do it", async () => {
    const g = await gateway(twoOfEach());
    const q = queueName('consumer');
    await g.broker.declareQueue(q);
    const poll = await call(g.url, 'POST', `/v1/queues/${q}/leases`, {
      token: TOKENS.worker,
      json: { max: 1, consumer: 'c1' },
    });
    expect(poll.status).toBe(200);
    const other = await call(g.url, 'DELETE', `/v1/queues/${q}/consumers/c1`, {
      token: OTHER.worker,
    });
    expect(other.status).toBe(403);
    expect(errorCodeOf(other)).toBe('FORBIDDEN');
    const hijack = await call(g.url, 'POST', `/v1/queues/${q}/leases`, {
      token: OTHER.worker,
      json: { max: 1, consumer: 'c1' },
    });
    expect(hijack.status).toBe(403);
    // Still served: the owner's consumer was not cancelled.
    await g.broker.publish(q, [{ body: '{"x":1}' }]);
    const served = await call(g.url, 'POST', `/v1/queues/${q}/leases`, {
      token: TOKENS.worker,
      json: { max: 1, consumer: 'c1', waitMs: 5_000 },
    });
    expect((served.json as { leases: unknown[] }).leases).toHaveLength(1);
    const admin = await call(g.url, 'DELETE', `/v1/queues/${q}/consumers/c1`, {
      token: TOKENS.admin,
    });
    expect(admin.status).toBe(204);
  });
});

describe('gateway: rate limits', () => {
  it('answers 429 to a flood of requests with bad tokens (per-IP limit before auth)', async () => {
    const g = await gateway({ rateLimit: 5, ipRateLimit: 20 });
    const statuses: number[] = [];
    for (let i = 0; i < 60; i++) {
      const res = await call(g.url, 'GET', '/v1/queues', { token: `bad-token-${i}-0123456789` });
      statuses.push(res.status);
      if (res.status === 429) {
        expect(errorCodeOf(res)).toBe('RATE_LIMITED');
        expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
        break;
      }
    }
    expect(statuses).toContain(401);
    expect(statuses).toContain(429);
  });
});

describe('gateway: names at the boundary', () => {
  it('refuses queue and consumer names with control characters, wildcards or over 200 bytes, naming the field', async () => {
    const g = await gateway();
    const bad = [
      `${queueName('esc')}\u001b[2J`,
      `${queueName('nul')}\u0000`,
      `${queueName('star')}.*`,
      'q'.repeat(255),
    ];
    for (const name of bad) {
      const res = await call(g.url, 'POST', `/v1/queues/${encodeURIComponent(name)}/tasks`, {
        token: TOKENS.producer,
        json: [1],
      });
      expect(res.status, name).toBe(400);
      expect(errorMessageOf(res)).toMatch(/^path parameter "queue": queue name/);
      // eslint-disable-next-line no-control-regex
      expect(errorMessageOf(res)).not.toMatch(/[\u0000-\u001f]/);
    }
    const q = queueName('ok');
    const consumer = await call(g.url, 'POST', `/v1/queues/${q}/leases`, {
      token: TOKENS.worker,
      json: { max: 1, consumer: 'c\u001b]0;x\u0007' },
    });
    expect(consumer.status).toBe(400);
    expect(errorMessageOf(consumer)).toMatch(/"consumer"/);
    const deadLetter = await call(g.url, 'PUT', `/v1/queues/${q}`, {
      token: TOKENS.worker,
      json: { deadLetterQueue: 'dead\u0007' },
    });
    expect(deadLetter.status).toBe(400);
    expect(errorMessageOf(deadLetter)).toMatch(/"deadLetterQueue"/);
  });

  it('refuses a reply address with control characters and accepts an amq. reply address', async () => {
    const g = await gateway();
    const q = queueName('reply');
    await g.broker.declareQueue(q);
    await g.broker.publish(q, [{ body: '{}' }]);
    const res = await call(g.url, 'POST', `/v1/queues/${q}/leases`, {
      token: TOKENS.worker,
      json: { max: 1, waitMs: 5_000 },
    });
    const [lease] = (res.json as { leases: { leaseId: string }[] }).leases;
    const bad = await call(g.url, 'POST', `/v1/leases/${lease!.leaseId}/ack`, {
      token: TOKENS.worker,
      json: { publish: { queue: 'replies\u001b[31m', messages: [{ body: '{}' }] } },
    });
    expect(bad.status).toBe(400);
    expect(errorMessageOf(bad)).toMatch(/"publish.queue": replyTo name/);
  });
});

describe('gateway: ingest that fails part way', () => {
  it('says exactly which items were stored when the broker fails part way (503 with accepted and ids)', async () => {
    let fault: FaultBroker | undefined;
    const g = await gateway({}, (b) => (fault = new FaultBroker(b)));
    const q = queueName('partial');
    // Declares first, so that only the publishes of the 20,000 items meet the fault.
    await g.broker.declareQueue(q);
    await g.broker.declareQueue(`${q}.results`);
    fault!.failPublishesAfter(
      8,
      new BrokerError(ErrorCode.BrokerUnavailable, 'publish to queue: disk is full'),
    );
    const items = Array.from({ length: 20_000 }, (_, i) => ({ i }));
    const res = await call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
      token: TOKENS.producer,
      json: items,
    });
    expect(res.status).toBe(503);
    expect(errorCodeOf(res)).toBe('BROKER_UNAVAILABLE');
    expect(errorMessageOf(res)).toMatch(/disk is full; 8000 of 20000 items were stored/);
    const body = res.json as { accepted: number; ids: (string | null)[] };
    expect(body.accepted).toBe(8000);
    expect(body.ids).toHaveLength(20_000);
    const storedIds = body.ids.filter((id): id is string => id !== null);
    expect(storedIds).toHaveLength(8000);
    // Exactly the items with an id are on the queue: retrying the others duplicates nothing.
    const seen: string[] = [];
    const consumer = await g.broker.consume(
      q,
      async (d: Delivery) => {
        seen.push(decode(d.body).id);
        await d.ack();
      },
      { prefetch: 1000 },
    );
    await waitFor(() => seen.length >= 8000, 15_000, 'the 8000 stored messages');
    await consumer.cancel();
    expect(seen.sort()).toEqual([...storedIds].sort());
    expect(await count(g.broker, q)).toBe(0);
  });
});

describe('gateway: ingest retried with its Idempotency-Key', () => {
  it('publishes on a retry with the same Idempotency-Key only the items a failed request did not store', async () => {
    let fault: FaultBroker | undefined;
    const g = await gateway({}, (b) => (fault = new FaultBroker(b)));
    const q = queueName('retry');
    await g.broker.declareQueue(q);
    await g.broker.declareQueue(`${q}.results`);
    const err = new BrokerError(ErrorCode.BrokerUnavailable, 'publish to queue: disk is full');
    fault!.failPublishesAfter(3, err);
    const items = Array.from({ length: 10_000 }, (_, i) => ({ i }));
    const send = () =>
      call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
        token: TOKENS.producer,
        json: items,
        headers: { 'idempotency-key': 'batch-1' },
      });
    const first = await send();
    expect(first.status).toBe(503);
    expect((first.json as { accepted: number }).accepted).toBe(3000);
    fault!.failPublishesAfter(2, err);
    const second = await send();
    expect(second.status).toBe(503);
    expect((second.json as { accepted: number }).accepted).toBe(5000);
    fault!.failPublishesAfter(Infinity, err);
    const third = await send();
    expect(third.status).toBe(200);
    const answer = third.json as { accepted: number; ids: string[] };
    expect(answer.accepted).toBe(10_000);
    expect(new Set(answer.ids).size).toBe(10_000);
    // Every item once: nothing stored twice across the three requests.
    expect(await count(g.broker, q)).toBe(10_000);
  });
});

describe('gateway: tasks no worker could run', () => {
  it('refuses at ingest a task whose key is over the envelope limit, naming the item and field', async () => {
    const g = await gateway();
    const q = queueName('key');
    const res = await call(g.url, 'POST', `/v1/queues/${q}/tasks?key=id`, {
      token: TOKENS.producer,
      json: [{ id: 'a' }, { id: 'k'.repeat(2_000) }],
    });
    expect(res.status).toBe(400);
    expect(errorCodeOf(res)).toBe('BAD_INPUT');
    expect(errorMessageOf(res)).toMatch(/item 1: envelope field "key"/);
    expect(await count(g.broker, q)).toBe(0);
  });
});

describe('gateway: malformed bodies and framework answers', () => {
  it('refuses JSON nested deeper than the documented limit with 400', async () => {
    const g = await gateway();
    const q = queueName('deep');
    const deep = '['.repeat(10_000) + ']'.repeat(10_000);
    const res = await call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
      token: TOKENS.producer,
      body: `[${deep}]`,
    });
    expect(res.status).toBe(400);
    expect(errorCodeOf(res)).toBe('BAD_INPUT');
    expect(errorMessageOf(res)).toMatch(/deeper than 128 levels at byte 128/);
    const nd = await call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
      token: TOKENS.producer,
      body: `1\n${deep}\n`,
      contentType: 'application/x-ndjson',
    });
    expect(nd.status).toBe(400);
    expect(errorMessageOf(nd)).toMatch(/line 2/);
    const lease = await call(g.url, 'POST', `/v1/queues/${q}/leases`, {
      token: TOKENS.worker,
      body: `{"max":1,"x":${deep}}`,
    });
    expect(lease.status).toBe(400);
    expect(await count(g.broker, q)).toBe(0);
  });

  it('answers MALFORMED_JSON for a body that is not valid UTF-8', async () => {
    const g = await gateway();
    const q = queueName('utf8');
    const body = Buffer.concat([
      Buffer.from('[{"a":"'),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('"}]'),
    ]);
    const res = await call(g.url, 'POST', `/v1/queues/${q}/tasks`, {
      token: TOKENS.producer,
      body,
    });
    expect(res.status).toBe(400);
    expect(errorCodeOf(res)).toBe('MALFORMED_JSON');
    expect(errorMessageOf(res)).toMatch(/not valid UTF-8 at byte 7/);
    const lease = await call(g.url, 'POST', `/v1/queues/${q}/leases`, {
      token: TOKENS.worker,
      body: Buffer.from([0x7b, 0xc3, 0x28, 0x7d]),
    });
    expect(lease.status).toBe(400);
    expect(errorCodeOf(lease)).toBe('MALFORMED_JSON');
  });

  it("answers fastify's own refusals in the {error:{code,message}} shape", async () => {
    const g = await gateway();
    const q = queueName('shape');
    const cases: [string, string, RequestInit][] = [
      ['bad url encoding', `/v1/queues/%zz/tasks`, { method: 'GET' }],
      ['long parameter', `/v1/queues/${'x'.repeat(600)}`, { method: 'GET' }],
      [
        'bad content type',
        `/v1/queues/${q}/tasks`,
        { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '[1]' },
      ],
      [
        'empty json body',
        `/v1/queues/${q}/leases`,
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: '' },
      ],
    ];
    for (const [what, path, init] of cases) {
      const res = await fetch(g.url + path, {
        ...init,
        headers: { ...(init.headers as object), authorization: `Bearer ${TOKENS.admin}` },
      });
      const json = (await res.json()) as { error?: { code?: unknown; message?: unknown } };
      expect(res.status, what).toBeGreaterThanOrEqual(400);
      expect(typeof json.error?.code, what).toBe('string');
      expect(typeof json.error?.message, what).toBe('string');
      expect(Object.keys(json), what).toEqual(['error']);
    }
    // What node's HTTP parser refuses is answered on the socket, in the same shape.
    const raw = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(new URL(g.url).port), '127.0.0.1');
      let text = '';
      socket.on('data', (d) => (text += d.toString()));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
      socket.write('NOT HTTP AT ALL\r\n\r\n');
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400/);
    expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))).toEqual({
      error: { code: 'BAD_INPUT', message: 'the request is not valid HTTP' },
    });
  });

  it('returns ready messages to the first waitMs: 0 poll', async () => {
    const g = await gateway();
    const q = queueName('first');
    await g.broker.declareQueue(q);
    await g.broker.publish(q, [{ body: '{"a":1}' }, { body: '{"a":2}' }]);
    const res = await call(g.url, 'POST', `/v1/queues/${q}/leases`, {
      token: TOKENS.worker,
      json: { max: 10, waitMs: 0 },
    });
    expect(res.status).toBe(200);
    expect((res.json as { leases: unknown[] }).leases).toHaveLength(2);
  });
});

describe('gateway: jobs', () => {
  it('adds items to a job through POST /v1/jobs/:name/items, idempotent by the job key, with status', async () => {
    let broker: Broker | undefined;
    const held: { store?: SqliteStore } = {};
    const g = await gateway(
      {
        // The broker exists only once the gateway is made: the provider is made on first use.
        jobs: { addItems: (...a) => storeJobs(broker!, async () => held.store!).addItems(...a) },
        status: {
          job: async (name) =>
            (await held.store!.jobs.getJob(name))
              ? jobStatus(broker!, held.store!, name)
              : undefined,
        },
      },
      (b) => (broker = b),
    );
    const store = new SqliteStore({ path: join(g.dir, 'store.db') });
    held.store = store;
    const name = `hardjob${process.pid}${++seq}`;
    const first = await call(g.url, 'POST', `/v1/jobs/${name}/items?key=id`, {
      token: TOKENS.producer,
      json: [
        { id: 1, text: 'a' },
        { id: 2, text: 'b' },
      ],
    });
    expect(first.status).toBe(200);
    expect(first.json).toEqual({ job: name, items: 2, added: 2, published: 2 });
    const again = await call(g.url, 'POST', `/v1/jobs/${name}/items`, {
      token: TOKENS.producer,
      body: '{"id":2,"text":"b"}\n{"id":3,"text":"c"}\n',
      contentType: 'application/x-ndjson',
    });
    expect(again.status).toBe(200);
    expect(again.json).toEqual({ job: name, items: 2, added: 1, published: 1 });
    expect(await count(g.broker, name)).toBe(3);
    const status = await call(g.url, 'GET', `/v1/jobs/${name}`, { token: TOKENS.worker });
    expect(status.status).toBe(200);
    const worker = await call(g.url, 'POST', `/v1/jobs/${name}/items`, {
      token: TOKENS.worker,
      json: [{ id: 4 }],
    });
    expect(worker.status).toBe(403);
    const notObject = await call(g.url, 'POST', `/v1/jobs/${name}/items`, {
      token: TOKENS.producer,
      json: [{ id: 5 }, 7],
    });
    expect(notObject.status).toBe(400);
    expect(errorMessageOf(notObject)).toMatch(/item 1 is not a JSON object/);
    await store.close();
  });
});

describe('gateway: workers that pull through it', () => {
  it('shows a gateway worker in GET /v1/workers and to qtune status on the broker', async () => {
    const g = await gateway();
    const client = await GatewayBroker.open({ url: g.url, token: TOKENS.worker });
    const report: WorkerReport = {
      worker: { id: `gw-worker-${process.pid}`, host: 'gpu-box', pid: 4242 },
      queue: 'prompts',
      startedAt: Date.now(),
      done: 7,
      failed: 0,
      deadLettered: 0,
      inFlight: 1,
      rate: 2,
    };
    const control = await serveStatusRequests(client, () => report);
    try {
      const workers = await waitFor(
        async () => {
          const res = await call(g.url, 'GET', '/v1/workers?waitMs=200', { token: TOKENS.admin });
          const listed = (res.json as { workers: WorkerReport[] }).workers;
          return listed.length > 0 ? listed : undefined;
        },
        10_000,
        'a worker report',
      );
      expect(workers).toEqual([report]);
      // What `qtune status` does on the broker itself.
      expect(await gatherWorkerReports(g.broker, 300)).toEqual([report]);
    } finally {
      await control.cancel();
      await client.close();
    }
  });
});
