import amqplib from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AmqpBroker } from '../../src/broker/amqp/index.js';
import type { Delivery } from '../../src/broker/contract.js';
import { ErrorCode, InputError } from '../../src/protocol/index.js';
import { assertBuilt, runCli } from '../cli/helpers.js';
import { freePort, startRabbit, type RabbitNode } from '../support/rabbitmq.mjs';

// One node with the management plugin (status lists queues through it); unique names per test.
let node: RabbitNode | undefined;
let url = '';

beforeAll(async () => {
  assertBuilt();
  const managementPort = await freePort();
  node = await startRabbit({
    plugins: ['rabbitmq_management'],
    config: [`management.tcp.port = ${managementPort}`, 'management.tcp.ip = 127.0.0.1'],
  });
  url = `${node.url}?management=${managementPort}`;
}, 120_000);

afterAll(async () => {
  await node?.stop();
}, 120_000);

/** Whether RabbitMQ has the queue, asked on a connection of its own. */
async function exists(name: string): Promise<boolean> {
  const conn = await amqplib.connect(node!.url);
  try {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    await ch.checkQueue(name);
    return true;
  } catch (err) {
    if ((err as { code?: number }).code === 404) return false;
    throw err;
  } finally {
    await conn.close().catch(() => undefined);
  }
}

describe('AMQP names', () => {
  it('refuses amq.*, over-long and escape-bearing names as bad input, not as an unavailable broker', async () => {
    const broker = await AmqpBroker.open(url);
    try {
      for (const bad of ['amq.mine', 'x'.repeat(255), 'q\u001b[2J', 'nul\u0000']) {
        for (const call of [
          () => broker.declareQueue(bad),
          () => broker.publish(bad, [{ body: '{}' }]),
          () => broker.stats(bad),
          () => broker.deleteQueue(bad),
        ]) {
          const err = await call().then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(err, JSON.stringify(bad)).toBeInstanceOf(InputError);
          expect((err as InputError).code).toBe(ErrorCode.BadInput);
        }
      }
      expect(await exists('amq.mine')).toBe(false);
    } finally {
      await broker.close();
    }
  });

  it('declares the longest queue name a user may give with every queue derived from it', async () => {
    const broker = await AmqpBroker.open(url);
    const name = `long-${'n'.repeat(195)}`;
    expect(Buffer.byteLength(name)).toBe(200);
    try {
      await broker.declareQueue(name);
      await broker.declareQueue(`${name}.results`);
      // A delayed publish makes the longest derived name, `NAME.results.delayed.<ms>`.
      await broker.publish(`${name}.results`, [{ body: '{}', delayMs: 50_000_000 }]);
      for (const derived of [name, `${name}.dead`, `${name}.results`, `${name}.results.dead`]) {
        expect(await exists(derived), derived).toBe(true);
      }
      expect(await exists(`${name}.results.delayed.50000000`)).toBe(true);
      expect((await broker.stats(`${name}.results`)).delayed).toBe(1);
    } finally {
      await broker.deleteQueue(`${name}.results`);
      await broker.close();
    }
  });

  it('reads the stats of its own temporary queue and deletes it', async () => {
    const broker = await AmqpBroker.open(url);
    const name = `temp-${Date.now()}`;
    try {
      await broker.declareQueue(name, { temporary: true });
      await broker.publish(name, [{ body: '{"n":1}' }, { body: '{"n":2}' }]);
      await expect.poll(async () => (await broker.stats(name)).ready, { timeout: 10_000 }).toBe(2);
      await broker.deleteQueue(name);
      expect(await exists(name)).toBe(false);
    } finally {
      await broker.close();
    }
  });
});

describe('qtune status on RabbitMQ', () => {
  it(
    'shows a queue it cannot use as a row with its error, escaped, and the others in full',
    { timeout: 60_000 },
    async () => {
      const broker = await AmqpBroker.open(url);
      const good = `good-${Date.now()}`;
      await broker.declareQueue(good);
      await broker.publish(good, [{ body: '{}' }]);
      await broker.close();
      // Made by another client, which RabbitMQ allows and qtune refuses.
      const long = `long-${Date.now()}-`.padEnd(255, 'l');
      const evil = `evil-${Date.now()}\u001b[2J\u001b]0;owned\u0007`;
      const conn = await amqplib.connect(node!.url);
      const ch = await conn.createChannel();
      await ch.assertQueue(long, { durable: true });
      await ch.assertQueue(evil, { durable: true });
      try {
        const res = await runCli(['status', '--broker', url, '--wait', '100ms'], {
          timeoutMs: 50_000,
        });
        expect(res.code, res.stderr).toBe(0);
        expect(res.stdout).not.toContain('\u001b');
        expect(res.stdout).not.toContain('\u0007');
        const lines = res.stdout.split('\n');
        expect(lines[0]).toMatch(
          /^queue\s+ready\s+delayed\s+in flight\s+dead\s+consumers\s+error$/,
        );
        expect(lines.find((l) => l.startsWith(good))).toMatch(/^good-\d+\s+1\s+0\s+0\s+0\s+0\s*$/);
        expect(lines.find((l) => l.startsWith(long.slice(0, 40)))).toMatch(
          /255 bytes long; the limit is 238/,
        );
        expect(lines.find((l) => l.startsWith('evil-'))).toMatch(
          /^evil-\d+\\x1b\[2J\\x1b\]0;owned\\x07\s.*control character U\+001B/,
        );
        const json = await runCli(['status', '--broker', url, '--wait', '100ms', '--json'], {
          timeoutMs: 50_000,
        });
        expect(json.code, json.stderr).toBe(0);
        const { queues } = JSON.parse(json.stdout) as {
          queues: { queue: string; ready?: number; error?: string }[];
        };
        expect(queues.find((q) => q.queue === good)?.ready).toBe(1);
        expect(queues.find((q) => q.queue === evil)?.error).toMatch(/control character/);
      } finally {
        await ch.deleteQueue(long);
        await ch.deleteQueue(evil);
        await conn.close();
      }
    },
  );
});

describe('AMQP delivery counts', () => {
  it('does not trust a negative, fractional or absurd x-qtune-delivered header from a publisher', async () => {
    const broker = await AmqpBroker.open(url);
    const queue = `counts-${Date.now()}`;
    const conn = await amqplib.connect(node!.url);
    try {
      await broker.declareQueue(queue, { maxDeliveries: 2 });
      const ch = await conn.createConfirmChannel();
      const forged = [-5, 1.5, 1e12, '-3', 'abc'];
      for (const [i, v] of forged.entries()) {
        ch.sendToQueue(queue, Buffer.from(`{"i":${i}}`), {
          messageId: `m${i}`,
          persistent: true,
          headers: { 'x-qtune-delivered': v },
        });
      }
      await ch.waitForConfirms();
      const seen: Delivery[] = [];
      const consumer = await broker.consume(queue, async (d) => {
        seen.push(d);
        await d.ack();
      });
      await expect.poll(() => seen.length, { timeout: 10_000 }).toBe(forged.length);
      await consumer.cancel();
      expect(seen.map((d) => d.deliveryCount)).toEqual(forged.map(() => 1));
      expect(seen.every((d) => !('x-qtune-delivered' in d.headers))).toBe(true);
    } finally {
      await conn.close();
      await broker.deleteQueue(queue);
      await broker.close();
    }
  });
});
