import { randomUUID } from 'node:crypto';
import { createConnection, createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, headers } from '@nats-io/transport-node';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerStatus, Delivery } from '../../src/broker/contract.js';
import {
  DEAD_LETTER_DELIVERIES_HEADER,
  DEAD_LETTER_REASON_HEADER,
} from '../../src/broker/contract.js';
import { NatsBroker, parseNatsUrl } from '../../src/broker/nats/index.js';
import { parseBrokerUrl } from '../../src/broker/open.js';
import { BrokerError, ErrorCode, InputError } from '../../src/protocol/errors.js';
import { WAIT_MS, waitFor } from '../support/wait.js';
import { brokerConformanceSuite } from './conformance/suite.js';
import { natsAvailable, startNats } from '../support/nats.mjs';
import type { NatsServer } from '../support/nats.mjs';

// One nats-server (JetStream) for the suite; every test uses its own queue names.
let server: NatsServer | undefined;
let url = '';

const available = natsAvailable();

beforeAll(async () => {
  if (!available) return;
  server = await startNats();
  url = server.url;
}, 60_000);

afterAll(async () => {
  await server?.stop();
}, 60_000);

describe.skipIf(!available)('NATS JetStream (nats-server package installed)', () => {
  brokerConformanceSuite({
    name: 'nats',
    open: () => NatsBroker.open(url),
    get url() {
      return url;
    },
  });
});

describe.skipIf(!available)('NATS JetStream: what is special to it', () => {
  const handles: NatsBroker[] = [];
  const connections: NatsConnection[] = [];
  const servers: NatsServer[] = [];
  const cleanupsOf: (() => Promise<void> | void)[] = [];
  async function open(u = url): Promise<NatsBroker> {
    const b = await NatsBroker.open(u);
    handles.push(b);
    return b;
  }
  async function raw(u = url): Promise<NatsConnection> {
    const nc = await connect({ servers: new URL(u).host });
    connections.push(nc);
    return nc;
  }
  afterEach(async () => {
    await Promise.all(handles.splice(0).map((h) => h.close()));
    await Promise.all(connections.splice(0).map((c) => c.close()));
    await Promise.all(servers.splice(0).map((s) => s.stop()));
    for (const c of cleanupsOf.splice(0)) await c();
  });
  const unique = (label: string) => `nats.${label}.${randomUUID().slice(0, 8)}`;

  it('masks the password when NATS refuses the credentials, and connects with the right ones', async () => {
    const secured = await startNats({ user: 'qtune', password: 's3cret-pw' });
    servers.push(secured);
    const wrong = `nats://qtune:wrong-pw@127.0.0.1:${secured.port}`;
    const err = await NatsBroker.open(wrong).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe(ErrorCode.BrokerUnavailable);
    expect(err!.message).toContain('nats://qtune:***@127.0.0.1');
    expect(err!.message).not.toContain('wrong-pw');
    const b = await open(secured.url);
    const q = unique('auth');
    await b.declareQueue(q);
    expect(await b.publish(q, [{ body: 'x' }])).toHaveLength(1);
  });

  it('rejects a URL of another scheme or without a host, naming it', () => {
    expect(() => parseNatsUrl('amqp://h:1')).toThrow(InputError);
    expect(() => parseNatsUrl('nats://u:pw@')).toThrow(/not a valid URL|names no host/);
    expect(parseNatsUrl('nats://u:p%40ss@h')).toEqual({
      servers: 'h:4222',
      user: 'u',
      pass: 'p@ss',
    });
    expect(parseBrokerUrl('nats://h:4333')).toEqual({ kind: 'nats', location: 'nats://h:4333' });
  });

  it('keeps the queue policy in its stream: AckWait is the lease, and a fresh handle detects a mismatch', async () => {
    const a = await open();
    const q = unique('policy');
    await a.declareQueue(q, { leaseMs: 1500, maxDeliveries: 3 });
    const jsm = await jetstreamManager(await raw());
    const info = await jsm.streams.info(`QTUNE_${q.replace(/\./g, '_2E')}`);
    expect(info.config.retention).toBe('workqueue');
    expect(JSON.parse(info.config.description!)).toMatchObject({ queue: q, leaseMs: 1500 });
    const consumer = await jsm.consumers.info(info.config.name, 'qtune');
    expect(consumer.config.ack_wait).toBe(1500 * 1_000_000);
    const b = await open();
    await expect(b.declareQueue(q, { leaseMs: 2000 })).rejects.toThrow(
      /leaseMs 1500; declared with 2000/,
    );
    await expect(b.declareQueue(q, { maxDeliveries: 3 })).resolves.toBeUndefined();
    expect(await b.listQueues()).toContain(q);
  });

  it('says which queue is missing on publish and consume, and refuses reply-inbox names as queues', async () => {
    const b = await open();
    const q = unique('missing');
    await expect(b.publish(q, [{ body: 'x' }])).rejects.toThrow(
      new RegExp(`queue "${q.replace(/\./g, '\\.')}" does not exist`),
    );
    await expect(b.consume(q, () => undefined)).rejects.toMatchObject({
      code: ErrorCode.BrokerState,
    });
    await expect(b.declareQueue('_INBOX.mine')).rejects.toThrow(InputError);
    await expect(b.stats(q)).rejects.toThrow(/does not exist/);
  });

  it('takes a bare body from a plain NATS client and ignores malformed qtune headers', async () => {
    const b = await open();
    const q = unique('plain');
    await b.declareQueue(q);
    const js = jetstream(await raw());
    const h = headers();
    h.set('Qtune-Headers', 'not json{');
    h.set('Qtune-Delivered', '-7');
    const ack = await js.publish(`qtune.q.${q.replace(/\./g, '_2E')}`, '{"n":1}', { headers: h });
    const seen: Delivery[] = [];
    await b.consume(q, async (d) => {
      seen.push(d);
      await d.ack();
    });
    await waitFor(() => seen.length === 1, WAIT_MS, 'the plain message');
    expect(seen[0]!.body.toString()).toBe('{"n":1}');
    expect(seen[0]!.id).toBe(`nats-${ack.seq}`);
    expect(seen[0]!.headers).toEqual({});
    expect(seen[0]!.deliveryCount).toBe(1);
  });

  it('stores a publish repeated with the same de-duplication id once', async () => {
    const b = await open();
    const q = unique('dedupe');
    await b.declareQueue(q);
    const js = jetstream(await raw());
    const subject = `qtune.q.${q.replace(/\./g, '_2E')}`;
    const first = await js.publish(subject, 'once', { msgID: 'retry-1' });
    const again = await js.publish(subject, 'once', { msgID: 'retry-1' });
    expect(again.duplicate).toBe(true);
    expect(again.seq).toBe(first.seq);
    expect((await b.stats(q)).ready).toBe(1);
  });

  it('accepts priorities but delivers in publish order, as it declares (priorities: false)', async () => {
    const b = await open();
    expect(b.capabilities.priorities).toBe(false);
    const q = unique('prio');
    await b.declareQueue(q, { priorities: 5 });
    await b.publish(q, [
      { body: 'low', priority: 0 },
      { body: 'high', priority: 4 },
    ]);
    const seen: Delivery[] = [];
    await b.consume(q, async (d) => {
      seen.push(d);
      await d.ack();
    });
    await waitFor(() => seen.length === 2, WAIT_MS, 'two deliveries');
    expect(seen.map((d) => d.body.toString())).toEqual(['low', 'high']);
    expect(seen.map((d) => d.priority)).toEqual([0, 0]);
    await expect(b.pauseQueue(q)).rejects.toThrow(/cannot pause a consumer/);
  });

  it('dead-letters a message whose holders keep losing the lease, once past maxDeliveries', async () => {
    const b = await open();
    const q = unique('lost-leases');
    await b.declareQueue(q, { maxDeliveries: 2, leaseMs: 200 });
    const [id] = await b.publish(q, [{ body: 'stuck' }]);
    const counts: number[] = [];
    await b.consume(q, (d) => void counts.push(d.deliveryCount), { prefetch: 1 });
    await waitFor(async () => (await b.stats(q)).deadLettered === 1, WAIT_MS, 'the dead letter');
    expect(counts).toEqual([1, 2]);
    await b.declareQueue(`${q}.dead`);
    const dead: Delivery[] = [];
    await b.consume(`${q}.dead`, async (d) => {
      dead.push(d);
      await d.ack();
    });
    await waitFor(() => dead.length === 1, WAIT_MS, 'the dead letter delivered');
    expect(dead[0]!.id).toBe(id);
    expect(String(dead[0]!.headers[DEAD_LETTER_REASON_HEADER])).toMatch(/^MAX_DELIVERIES/);
    expect(dead[0]!.headers[DEAD_LETTER_DELIVERIES_HEADER]).toBe(2);
    expect(await b.stats(q)).toMatchObject({ ready: 0, inFlight: 0 });
  });

  it('keeps every acknowledged message, and the queue policy, across a kill -9 of nats-server', async () => {
    const own = await startNats();
    servers.push(own);
    const b = await open(own.url);
    const q = unique('durable');
    await b.declareQueue(q, { leaseMs: 2500 });
    const ids = await b.publish(
      q,
      Array.from({ length: 200 }, (_, i) => ({ body: `m${i}` })),
    );
    await own.kill();
    await own.start();
    await waitFor(
      async () => (await b.stats(q).catch(() => undefined))?.ready === 200,
      WAIT_MS,
      'the 200 messages back',
    );
    const fresh = await open(own.url);
    await expect(fresh.declareQueue(q, { leaseMs: 1000 })).rejects.toThrow(/leaseMs 2500/);
    const got: string[] = [];
    await b.consume(
      q,
      async (d) => {
        got.push(d.id);
        await d.ack();
      },
      { prefetch: 50 },
    );
    await waitFor(() => got.length === 200, WAIT_MS, 'all 200 delivered');
    expect([...got].sort()).toEqual([...ids].sort());
  });

  it("after a network cut longer than the lease, the message goes to another consumer and the cut-off holder's late ack is a no-op", async () => {
    const proxy = await cuttableProxy(server!.port);
    cleanupsOf.push(() => proxy.close());
    const a = await open(`nats://127.0.0.1:${proxy.port}`);
    const b = await open();
    const statuses: BrokerStatus[] = [];
    a.on('status', (s) => statuses.push(s));
    const q = unique('cut');
    await b.declareQueue(q, { leaseMs: 800 });
    const [id] = await b.publish(q, [{ body: 'held' }]);
    const held: Delivery[] = [];
    await a.consume(q, (d) => void held.push(d), { prefetch: 1 });
    await waitFor(() => held.length === 1, WAIT_MS, 'A to hold the message');
    proxy.cut();
    const other: Delivery[] = [];
    await b.consume(q, (d) => void other.push(d), { prefetch: 1 });
    await waitFor(() => other.length === 1, WAIT_MS, 'B to get it after the lease');
    expect(other[0]!.id).toBe(id);
    expect(other[0]!.deliveryCount).toBe(2);
    proxy.heal();
    await waitFor(() => statuses.at(-1) === 'connected', WAIT_MS, 'A to reconnect');
    expect(statuses).toContain('reconnecting');
    await held[0]!.ack(); // lost lease: a no-op, B still holds the message
    // A's stats request follows the ack (had it been sent) on A's connection.
    expect(await a.stats(q)).toMatchObject({ inFlight: 1, ready: 0 });
    await b.publish(q, [{ body: 'after' }]);
    await other[0]!.ack();
    await waitFor(
      () => held.some((d) => d.body.toString() === 'after') || other.length === 2,
      WAIT_MS,
      'the next message to a consumer',
    );
    for (const d of [...held, ...other]) await d.ack();
    await waitFor(
      async () => {
        const s = await b.stats(q);
        return s.ready === 0 && s.inFlight === 0;
      },
      WAIT_MS,
      'the queue empty',
    );
  });

  it('consumes again by itself after a nats-server restart, saying reconnecting then connected', async () => {
    const own = await startNats();
    servers.push(own);
    const b = await open(own.url);
    const statuses: BrokerStatus[] = [];
    b.on('status', (s) => statuses.push(s));
    const q = unique('restart');
    await b.declareQueue(q);
    const got = new Set<string>();
    await b.consume(q, async (d) => {
      got.add(d.body.toString());
      await d.ack();
    });
    await b.publish(q, [{ body: 'before' }]);
    await waitFor(() => got.has('before'), WAIT_MS, 'the message before the restart');
    await own.restart();
    await waitFor(() => statuses.at(-1) === 'connected', WAIT_MS, 'the handle to reconnect');
    expect(statuses).toEqual(['reconnecting', 'connected']);
    await b.publish(q, [{ body: 'after' }]);
    await waitFor(() => got.has('after'), 10_000, 'the message after the restart');
    expect(await b.stats(q)).toMatchObject({ ready: 0, inFlight: 0, consumers: 1 });
  });
});

/**
 * A TCP proxy to the server on `port` that can cut every connection through it and refuse new
 * ones (`cut`) until `heal`.
 */
async function cuttableProxy(
  port: number,
): Promise<{ port: number; cut: () => void; heal: () => void; close: () => Promise<void> }> {
  const sockets = new Set<Socket>();
  let down = false;
  const proxy = createServer((client) => {
    if (down) return void client.destroy();
    const upstream = createConnection(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    port: (proxy.address() as AddressInfo).port,
    cut: () => {
      down = true;
      for (const s of sockets) s.destroy();
    },
    heal: () => {
      down = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        proxy.close(() => resolve());
      }),
  };
}
