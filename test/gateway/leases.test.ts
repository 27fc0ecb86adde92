import { afterEach, describe, expect, it } from 'vitest';
import type { Broker, Delivery } from '../../src/broker/contract.js';
import { DEAD_LETTER_REASON_HEADER } from '../../src/broker/contract.js';
import {
  TOKENS,
  call,
  errorCodeOf,
  startGateway,
  type CallResult,
  type TestGateway,
} from './helpers.js';
import { sleep, waitFor } from '../support/wait.js';

interface Lease {
  leaseId: string;
  messageId: string;
  body: string;
  headers: Record<string, unknown>;
  priority: number;
  deliveryCount: number;
  leaseExpiresAt: number;
}

const gateways: TestGateway[] = [];
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.close()));
});

async function gateway(overrides: Parameters<typeof startGateway>[0] = {}): Promise<TestGateway> {
  const g = await startGateway(overrides);
  gateways.push(g);
  return g;
}

let seq = 0;
function queueName(label: string): string {
  return `lease.${label}.${process.pid}.${++seq}`;
}

async function publish(g: TestGateway, queue: string, bodies: string[], leaseMs?: number) {
  await g.broker.declareQueue(queue, leaseMs !== undefined ? { leaseMs, maxDeliveries: 5 } : {});
  return g.broker.publish(
    queue,
    bodies.map((body) => ({ body })),
  );
}

async function lease(
  g: TestGateway,
  queue: string,
  ask: { max: number; waitMs?: number; leaseMs?: number; consumer?: string },
  token: string = TOKENS.worker,
): Promise<Lease[]> {
  const res = await call(g.url, 'POST', `/v1/queues/${queue}/leases`, { token, json: ask });
  expect(res.status, res.text).toBe(200);
  return (res.json as { leases: Lease[] }).leases;
}

function settle(g: TestGateway, leaseId: string, op: string, json?: unknown): Promise<CallResult> {
  return call(g.url, 'POST', `/v1/leases/${leaseId}/${op}`, {
    token: TOKENS.worker,
    ...(json !== undefined && { json }),
  });
}

/** Takes the messages of `queue` straight from the broker, without settling them. */
async function takeDirect(
  broker: Broker,
  queue: string,
): Promise<{ got: Delivery[]; stop: () => Promise<void> }> {
  const got: Delivery[] = [];
  const consumer = await broker.consume(queue, (d) => {
    got.push(d);
  });
  return { got, stop: () => consumer.cancel() };
}

describe('gateway pull-consume', () => {
  it('leases deliveries with body, headers and count, and removes an acked one for good', async () => {
    const g = await gateway();
    const q = queueName('ack');
    await g.broker.declareQueue(q);
    await g.broker.publish(q, [{ id: 'm1', body: '{"x":1}', headers: { h: 'v' }, priority: 3 }]);
    const [l] = await lease(g, q, { max: 10, waitMs: 5_000 });
    expect(l).toMatchObject({ messageId: 'm1', body: '{"x":1}', priority: 3, deliveryCount: 1 });
    expect(l!.headers).toMatchObject({ h: 'v' });
    expect(l!.leaseExpiresAt).toBeGreaterThan(Date.now());
    const stats = await call(g.url, 'GET', `/v1/queues/${q}`, { token: TOKENS.worker });
    expect(stats.json).toMatchObject({ ready: 0, inFlight: 1 });
    expect((await settle(g, l!.leaseId, 'ack')).status).toBe(204);
    await waitFor(async () => (await g.broker.stats(q)).inFlight === 0, 15_000, 'the ack');
    expect(await g.broker.stats(q)).toMatchObject({ ready: 0, inFlight: 0 });
    expect(await lease(g, q, { max: 1, waitMs: 200 })).toEqual([]);
  });

  it('publishes the result and acks in one call with ack { publish }', async () => {
    const g = await gateway();
    const q = queueName('ack-publish');
    await publish(g, q, ['task']);
    await g.broker.declareQueue(`${q}.results`);
    const [l] = await lease(g, q, { max: 1, waitMs: 5_000 });
    const res = await settle(g, l!.leaseId, 'ack', {
      publish: { queue: `${q}.results`, messages: [{ id: 'r1', body: 'result' }] },
    });
    expect(res.status).toBe(204);
    await waitFor(
      async () => (await g.broker.stats(`${q}.results`)).ready === 1,
      15_000,
      'the result',
    );
    expect((await g.broker.stats(q)).inFlight).toBe(0);
  });

  it('redelivers a nacked lease with deliveryCount + 1, and holds it back for delayMs', async () => {
    const g = await gateway();
    const q = queueName('nack');
    await publish(g, q, ['again']);
    const [first] = await lease(g, q, { max: 1, waitMs: 5_000 });
    expect((await settle(g, first!.leaseId, 'nack', { error: 'try later' })).status).toBe(204);
    const [second] = await lease(g, q, { max: 1, waitMs: 5_000 });
    expect(second).toMatchObject({ messageId: first!.messageId, deliveryCount: 2 });
    expect((await settle(g, second!.leaseId, 'nack', { delayMs: 60_000 })).status).toBe(204);
    await waitFor(async () => (await g.broker.stats(q)).delayed === 1, 15_000, 'the delayed retry');
    expect(await lease(g, q, { max: 1, waitMs: 300 })).toEqual([]);
  });

  it('answers 410 Gone for an unknown lease and for one already settled', async () => {
    const g = await gateway();
    const q = queueName('gone');
    await publish(g, q, ['once']);
    const unknown = await settle(g, 'no-such-lease', 'ack');
    expect(unknown.status).toBe(410);
    expect(errorCodeOf(unknown)).toBe('LEASE_GONE');
    const [l] = await lease(g, q, { max: 1, waitMs: 5_000 });
    expect((await settle(g, l!.leaseId, 'release')).status).toBe(204);
    for (const op of ['ack', 'nack', 'release', 'extend']) {
      const again = await settle(g, l!.leaseId, op);
      expect(again.status, op).toBe(410);
    }
    const dead = await settle(g, l!.leaseId, 'dead-letter', { reason: 'late' });
    expect(dead.status).toBe(410);
    // Released uncounted: it comes back with the same delivery count.
    const [back] = await lease(g, q, { max: 1, waitMs: 5_000 });
    expect(back).toMatchObject({ messageId: l!.messageId, deliveryCount: 1 });
  });

  it('keeps an extended lease past its first end and nacks an expired one with LEASE_EXPIRED', async () => {
    const g = await gateway();
    const q = queueName('extend');
    await g.broker.declareQueue(q, { leaseMs: 5_000, maxDeliveries: 2 });
    await g.broker.publish(q, [{ body: 'kept' }, { body: 'dropped' }]);
    const leases = await lease(g, q, { max: 2, waitMs: 5_000, leaseMs: 600 });
    expect(leases).toHaveLength(2);
    const kept = leases.find((l) => l.body === 'kept')!;
    const dropped = leases.find((l) => l.body === 'dropped')!;
    const extended = await settle(g, kept.leaseId, 'extend', { ms: 10_000 });
    expect(extended.status).toBe(200);
    const until = (extended.json as { leaseExpiresAt: number }).leaseExpiresAt;
    expect(until).toBeGreaterThan(kept.leaseExpiresAt);
    // The dropped lease ends after 600 ms and comes back, counted.
    const [again] = await lease(g, q, { max: 1, waitMs: 10_000, leaseMs: 600 });
    expect(again).toMatchObject({ messageId: dropped.messageId, deliveryCount: 2 });
    expect(Date.now()).toBeGreaterThan(kept.leaseExpiresAt);
    expect((await settle(g, dropped.leaseId, 'ack')).status).toBe(410);
    // Still held: the extended lease did not come back and can be acked.
    expect((await settle(g, kept.leaseId, 'ack')).status).toBe(204);
    // Its second lease expires too: past maxDeliveries, dead-lettered with the gateway's reason.
    await g.broker.declareQueue(`${q}.dead`);
    const dead = await takeDirect(g.broker, `${q}.dead`);
    await waitFor(() => dead.got.length === 1, 15_000, 'the dead letter');
    expect(String(dead.got[0]!.headers[DEAD_LETTER_REASON_HEADER])).toContain('LEASE_EXPIRED');
    await dead.stop();
  });

  it('waits for work up to waitMs and answers as soon as a message arrives', async () => {
    const g = await gateway();
    const q = queueName('long-poll');
    await g.broker.declareQueue(q);
    const empty = await lease(g, q, { max: 1, waitMs: 300 });
    expect(empty).toEqual([]);
    const polling = lease(g, q, { max: 5, waitMs: 20_000 });
    await sleep(200);
    await g.broker.publish(q, [{ body: 'late' }]);
    const got = await polling;
    expect(got.map((l) => l.body)).toEqual(['late']);
  });

  it('ends a waiting poll at once when its consumer is cancelled', async () => {
    const g = await gateway();
    const q = queueName('cancel');
    await g.broker.declareQueue(q);
    const polling = lease(g, q, { max: 1, waitMs: 25_000, consumer: 'c-1' });
    await sleep(200);
    const started = Date.now();
    const del = await call(g.url, 'DELETE', `/v1/queues/${q}/consumers/c-1`, {
      token: TOKENS.worker,
    });
    expect(del.status).toBe(204);
    expect(await polling).toEqual([]);
    expect(Date.now() - started).toBeLessThan(20_000);
    await g.broker.publish(q, [{ body: 'after' }]);
    expect(await lease(g, q, { max: 1, waitMs: 300, consumer: 'c-1' })).toEqual([]);
  });

  it('answers 403 to a settle of a lease leased under another token', async () => {
    const g = await gateway();
    const q = queueName('owner');
    await publish(g, q, ['mine']);
    const [l] = await lease(g, q, { max: 1, waitMs: 5_000 }, TOKENS.admin);
    const res = await settle(g, l!.leaseId, 'ack');
    expect(res.status).toBe(403);
    expect(
      (await call(g.url, 'POST', `/v1/leases/${l!.leaseId}/ack`, { token: TOKENS.admin })).status,
    ).toBe(204);
  });

  it('acks many leases in one request, skipping and listing the gone ones, 403 for another token', async () => {
    const g = await gateway();
    const q = queueName('ack-many');
    await publish(g, q, ['a', 'b', 'c', 'd']);
    const mine = await lease(g, q, { max: 3, waitMs: 5_000 });
    expect(mine).toHaveLength(3);
    const [theirs] = await lease(g, q, { max: 1, waitMs: 5_000 }, TOKENS.admin);
    const ackMany = (leaseIds: unknown, token: string = TOKENS.worker) =>
      call(g.url, 'POST', '/v1/leases/ack', { token, json: { leaseIds } });
    const ids = mine.map((l) => l.leaseId);

    // One lease of another token: nothing is acked.
    const refused = await ackMany([...ids, theirs!.leaseId]);
    expect(refused.status).toBe(403);
    expect(await g.broker.stats(q)).toMatchObject({ ready: 0, inFlight: 4 });

    expect((await ackMany([])).status).toBe(400);
    expect((await ackMany('x')).status).toBe(400);

    const done = await ackMany([ids[0], 'no-such-lease', ...ids, ids[2]]);
    expect(done.status, done.text).toBe(200);
    expect(done.json).toEqual({ acked: 3, gone: ['no-such-lease', ids[0], ids[2]] });
    await waitFor(async () => (await g.broker.stats(q)).inFlight === 1, 15_000, 'the acks');
    // Acked for good; the admin's lease is still held, and acked by its owner.
    expect((await ackMany([theirs!.leaseId], TOKENS.admin)).json).toEqual({ acked: 1, gone: [] });
    await waitFor(async () => (await g.broker.stats(q)).inFlight === 0, 15_000, 'the last ack');
    expect(await lease(g, q, { max: 4, waitMs: 200 })).toEqual([]);
  });

  it('hands a parked delivery nobody leased back to the broker after half its lease, uncounted', async () => {
    const g = await gateway();
    const q = queueName('parked');
    await publish(g, q, ['a', 'b', 'c'], 1_000);
    // One is leased; the gateway's consumer parks the other two.
    const [l] = await lease(g, q, { max: 1, waitMs: 5_000 });
    expect(l).toBeDefined();
    const stats = await call(g.url, 'GET', `/v1/queues/${q}`, { token: TOKENS.worker });
    expect(stats.json).toMatchObject({ ready: 2, inFlight: 1 });
    const direct = await takeDirect(g.broker, q);
    await waitFor(
      () => direct.got.length === 2,
      15_000,
      'the parked deliveries back at the broker',
    );
    expect(direct.got.map((d) => d.body.toString()).sort()).toEqual(
      ['a', 'b', 'c'].filter((b) => b !== l!.body),
    );
    expect(direct.got.map((d) => d.deliveryCount)).toEqual([1, 1]);
    await Promise.all(direct.got.map((d) => d.ack()));
    await direct.stop();
  });

  it('hands back every parked and leased delivery when the gateway closes', async () => {
    const g = await gateway();
    const q = queueName('close');
    await publish(g, q, ['x', 'y', 'z']);
    const held = await lease(g, q, { max: 2, waitMs: 5_000 });
    expect(held).toHaveLength(2);
    const empty = queueName('close-empty');
    await g.broker.declareQueue(empty);
    const polling = lease(g, empty, { max: 1, waitMs: 25_000 });
    await sleep(200);
    const closing = Date.now();
    await g.app.close();
    expect(await polling).toEqual([]);
    expect(Date.now() - closing).toBeLessThan(20_000);
    const direct = await takeDirect(g.broker, q);
    await waitFor(() => direct.got.length === 3, 15_000, 'all three back at the broker');
    expect(direct.got.map((d) => d.deliveryCount)).toEqual([1, 1, 1]);
    await Promise.all(direct.got.map((d) => d.ack()));
    await direct.stop();
  });
});
