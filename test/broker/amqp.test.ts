import amqplib from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Writable } from 'node:stream';
import { AmqpBroker } from '../../src/broker/amqp/index.js';
import { Link } from '../../src/broker/amqp/link.js';
import type { Delivery } from '../../src/broker/contract.js';
import { envelopeMessage } from '../../src/broker/envelope-message.js';
import { encode } from '../../src/protocol/codec.js';
import { createEnvelope, MessageType } from '../../src/protocol/envelope.js';
import { RemoteError, Requester, serveRequests } from '../../src/patterns/request-reply.js';
import { waitFor } from '../support/wait.js';
import { brokerConformanceSuite } from './conformance/suite.js';
import { freePort, startRabbit } from '../support/rabbitmq.mjs';
import type { RabbitNode } from '../support/rabbitmq.mjs';

// One RabbitMQ node for the suite; every test uses its own queue names. The management plugin
// gives in-flight counts and the queue list; child processes reach the node through the URL.
let node: RabbitNode | undefined;
let url = '';

beforeAll(async () => {
  // Quorum queues report their in-flight count every quorum_tick_interval (5 s by default).
  process.env.RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS = '-rabbit quorum_tick_interval 250';
  const managementPort = await freePort();
  node = await startRabbit({
    plugins: ['rabbitmq_management'],
    config: [
      `management.tcp.port = ${managementPort}`,
      'management.tcp.ip = 127.0.0.1',
      'collect_statistics_interval = 250',
    ],
  });
  url = `${node.url}?management=${managementPort}`;
}, 120_000);

afterAll(async () => {
  await node?.stop();
}, 120_000);

brokerConformanceSuite({
  name: 'amqp',
  open: () => AmqpBroker.open(url),
  get url() {
    return url;
  },
});

describe('AMQP message properties', () => {
  it('mirror the envelope, whether the publisher passes its routing fields or only the body', async () => {
    const broker = await AmqpBroker.open(url);
    const conn = await amqplib.connect(node!.url);
    try {
      const queue = `props-${Date.now()}`;
      await broker.declareQueue(queue);
      const env = createEnvelope({
        type: MessageType.Task,
        payload: { n: 1 },
        replyTo: `${queue}.results`,
        correlationId: 'corr-1',
      });
      // With the routing fields at hand, and with the same envelope as a bare body to parse.
      await broker.publish(queue, [
        envelopeMessage(env),
        { id: 'second', body: encode(env), headers: { 'x-app': 'a' } },
        { id: 'bare', body: JSON.stringify({ n: 2 }) },
      ]);
      const ch = await conn.createChannel();
      const got = [];
      for (let i = 0; i < 3; i++) {
        const m = await ch.get(queue, { noAck: true });
        if (m === false) throw new Error(`message ${i} missing`);
        got.push(m.properties);
      }
      for (const p of got.slice(0, 2)) {
        expect(p).toMatchObject({
          type: 'task',
          replyTo: `${queue}.results`,
          correlationId: 'corr-1',
          contentType: 'application/json',
          deliveryMode: 2,
        });
      }
      expect(got[0]!.messageId).toBe(env.id);
      expect(got[1]!.headers).toMatchObject({ 'x-app': 'a' });
      expect(got[2]).toMatchObject({ messageId: 'bare', deliveryMode: 2 });
      expect(got[2]!.type).toBeUndefined();
      expect(got[2]!.replyTo).toBeUndefined();
      await broker.deleteQueue(queue);
    } finally {
      await conn.close();
      await broker.close();
    }
  });
});

describe('request/reply over RabbitMQ', () => {
  it('uses direct reply-to: replies come back with no reply queue declared', async () => {
    const client = await AmqpBroker.open(url);
    const server = await AmqpBroker.open(url);
    try {
      const queue = `rpc-${Date.now()}`;
      await serveRequests<{ n: number }, number>(server, queue, (p) => {
        if (p.n < 0) throw new Error(`negative: ${p.n}`);
        return p.n * 2;
      });
      const requester = await Requester.create(client, { timeoutMs: 10_000 });
      expect(requester.replyQueue).toBe('amq.rabbitmq.reply-to');
      const warnings: string[] = [];
      const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
      process.on('warning', onWarning);
      try {
        // 50 requests in flight at once on the one reply channel.
        const answers = await Promise.all(
          Array.from({ length: 50 }, (_, n) => requester.request<number>(queue, { n })),
        );
        expect(answers).toEqual(Array.from({ length: 50 }, (_, n) => n * 2));
        // Publishing on a reply channel: a message RabbitMQ returns as unroutable fails its own
        // call only, while other calls are in flight.
        const plain = `${queue}-plain`;
        await client.declareQueue(plain);
        const channel = await client.openReplyChannel!(() => undefined);
        const [routed, missing] = await Promise.allSettled([
          channel.publish(
            plain,
            Array.from({ length: 20 }, (_, n) => ({ body: `m${n}` })),
          ),
          channel.publish(`${queue}-missing`, [{ body: 'lost?' }]),
        ]);
        expect(routed.status).toBe('fulfilled');
        expect(missing.status).toBe('rejected');
        expect(String((missing as PromiseRejectedResult).reason)).toMatch(/unroutable/);
        await channel.close();
        await client.deleteQueue(plain);
        await new Promise((resolve) => setImmediate(resolve));
        expect(warnings).toEqual([]);
      } finally {
        process.off('warning', onWarning);
      }
      const failed = await requester.request(queue, { n: -1 }).catch((e: unknown) => e);
      expect(failed).toBeInstanceOf(RemoteError);
      expect((failed as RemoteError).message).toMatch(/negative: -1/);
      // No reply queue: only the request queue (and its dead-letter queue) exist.
      const queues = await client.listQueues();
      expect(queues.filter((q) => q.startsWith('qtune.reply.'))).toEqual([]);
      await requester.close();
      await expect(requester.request(queue, { n: 1 })).rejects.toThrow(/closed/);
    } finally {
      await client.close();
      await server.close();
    }
  });

  it('still offers a reply queue when asked for one', async () => {
    const client = await AmqpBroker.open(url);
    const server = await AmqpBroker.open(url);
    try {
      const queue = `rpc-q-${Date.now()}`;
      await serveRequests<{ n: number }, number>(server, queue, (p) => p.n + 1);
      const requester = await Requester.create(client, { directReply: false });
      expect(requester.replyQueue).toMatch(/^qtune\.reply\./);
      expect(await requester.request<number>(queue, { n: 41 })).toBe(42);
      await requester.close();
    } finally {
      await client.close();
      await server.close();
    }
  });
});

describe('coalesced acks on RabbitMQ', () => {
  it('ack the settled deliveries and never one still held, even when acks come out of order', async () => {
    const a = await AmqpBroker.open(url);
    const b = await AmqpBroker.open(url);
    try {
      const queue = `acks-${Date.now()}`;
      await a.declareQueue(queue);
      await a.publish(
        queue,
        Array.from({ length: 40 }, (_, n) => ({ id: `m${n}`, body: JSON.stringify(n) })),
      );
      // Hold m5 and m30; ack the rest, the later half before the earlier one.
      const held: Delivery[] = [];
      const acked = new Set<string>();
      const later: Delivery[] = [];
      await a.consume(
        queue,
        async (d) => {
          if (d.id === 'm5' || d.id === 'm30') held.push(d);
          else if (Number(JSON.parse(d.body.toString())) < 20) later.push(d);
          else {
            await d.ack();
            acked.add(d.id);
          }
          if (held.length + later.length + acked.size === 40) {
            for (const l of later.splice(0)) {
              await l.ack();
              acked.add(l.id);
            }
          }
        },
        { prefetch: 40 },
      );
      await waitFor(() => acked.size === 38);
      await waitFor(async () => (await a.stats(queue)).inFlight === 2);
      // The holder goes away without settling: RabbitMQ must give back exactly the two held.
      await a.close();
      const again: Delivery[] = [];
      await b.consume(queue, async (d) => {
        again.push(d);
        await d.ack();
      });
      await waitFor(() => again.length === 2);
      // Nothing ready or in flight: everything given back has been delivered and acked.
      await waitFor(async () => {
        const s = await b.stats(queue);
        return s.ready === 0 && s.inFlight === 0;
      });
      expect(again.map((d) => d.id).sort()).toEqual(['m30', 'm5']);
      expect(again.every((d) => d.deliveryCount === 2)).toBe(true);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('publishing over two confirm channels', () => {
  it('keeps each call in order while concurrent calls share the channels', async () => {
    const broker = await AmqpBroker.open(url);
    try {
      const queue = `lanes-${Date.now()}`;
      await broker.declareQueue(queue);
      const call = (name: string) =>
        broker.publish(
          queue,
          Array.from({ length: 2000 }, (_, n) => ({ id: `${name}${n}`, body: JSON.stringify(n) })),
        );
      await Promise.all([call('a'), call('b'), call('c')]);
      // The publishing connection carries two confirm channels.
      const api = `http://127.0.0.1:${new URL(url).searchParams.get('management')}/api`;
      const get = async <T>(path: string): Promise<T> => {
        const auth = `Basic ${Buffer.from('guest:guest').toString('base64')}`;
        return (await (
          await fetch(`${api}${path}`, { headers: { authorization: auth } })
        ).json()) as T;
      };
      await waitFor(async () => {
        const conns =
          await get<{ name: string; client_properties: { connection_name?: string } }[]>(
            '/connections',
          );
        const publishing = conns.find(
          (c) => c.client_properties.connection_name === 'qtune publish',
        );
        const channels =
          await get<{ confirm: boolean; connection_details: { name: string } }[]>('/channels');
        const confirming = channels.filter(
          (ch) => ch.confirm && ch.connection_details.name === publishing?.name,
        );
        return confirming.length === 2;
      });
      const seen: string[] = [];
      await broker.consume(
        queue,
        async (d) => {
          seen.push(d.id);
          await d.ack();
        },
        { prefetch: 500 },
      );
      await waitFor(() => seen.length === 6000);
      for (const name of ['a', 'b', 'c']) {
        const order = seen.filter((id) => id.startsWith(name)).map((id) => Number(id.slice(1)));
        expect(order).toEqual(Array.from({ length: 2000 }, (_, n) => n));
      }
    } finally {
      await broker.close();
    }
  });
});

describe('AMQP connection writes', () => {
  it('leave a turn of frames in one batched write on every connection a Link opens', async () => {
    const link = new Link(node!.url, {});
    await link.open();
    try {
      const conn = link.current()!;
      const socket = (conn as unknown as { connection: { stream: Writable } }).connection.stream;
      let calls = 0;
      for (const name of ['_write', '_writev'] as const) {
        const original = (socket as unknown as Record<string, (...a: unknown[]) => unknown>)[name]!;
        (socket as unknown as Record<string, unknown>)[name] = function (
          this: Writable,
          ...a: unknown[]
        ) {
          calls++;
          return original.apply(this, a);
        };
      }
      const ch = await conn.createConfirmChannel();
      const queue = `writes-${Date.now()}`;
      await ch.assertQueue(queue, { arguments: { 'x-queue-type': 'quorum' } });
      calls = 0;
      for (let i = 0; i < 500; i++) ch.sendToQueue(queue, Buffer.from(`m${i}`));
      await ch.waitForConfirms();
      // 500 publishes (1,500 frames) in one turn: a handful of socket writes, not hundreds.
      expect(calls).toBeGreaterThan(0);
      expect(calls).toBeLessThan(50);
      await ch.deleteQueue(queue);
      await ch.close();
    } finally {
      await link.close();
    }
  });
});
