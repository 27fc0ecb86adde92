import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AmqpBroker } from '../../src/broker/amqp/index.js';
import { sleep, waitFor } from '../support/wait.js';
import type { Broker, BrokerStatus } from '../../src/broker/contract.js';
import { startRabbit } from '../support/rabbitmq.mjs';
import type { RabbitNode } from '../support/rabbitmq.mjs';

// One node for the file; each test restarts it (stopNode, then start) while clients keep going.
let node: RabbitNode | undefined;
const handles: Broker[] = [];

beforeAll(async () => {
  node = await startRabbit();
}, 120_000);

afterAll(async () => {
  await Promise.allSettled(handles.map((h) => h.close()));
  await node?.stop();
}, 120_000);

async function open(): Promise<AmqpBroker> {
  const broker = await AmqpBroker.open(node!.url);
  handles.push(broker);
  return broker;
}

function statusLog(broker: Broker): BrokerStatus[] {
  const seen: BrokerStatus[] = [];
  broker.on('status', (s) => seen.push(s));
  return seen;
}

describe('AMQP broker across a RabbitMQ restart', () => {
  it(
    'resumes a consumer by itself and completes a publish issued during the outage',
    { timeout: 120_000 },
    async () => {
      const consumerHandle = await open();
      const publisher = await open();
      const queue = `faults.resume.${randomUUID().slice(0, 8)}`;
      await publisher.declareQueue(queue);
      const bodies: string[] = [];
      await consumerHandle.consume(queue, async (d) => {
        bodies.push(d.body.toString());
        await d.ack();
      });
      const consumerStatus = statusLog(consumerHandle);
      const publisherStatus = statusLog(publisher);
      await publisher.publish(queue, [{ body: 'before' }]);
      await waitFor(() => bodies.length === 1, 10_000, 'the message published before the outage');

      await node!.stopNode();
      await waitFor(
        () => consumerStatus.includes('reconnecting') && publisherStatus.includes('reconnecting'),
        10_000,
        'both handles to report reconnecting',
      );
      let published = false;
      const during = publisher.publish(queue, [{ body: 'during' }]).then((ids) => {
        published = true;
        return ids;
      });
      await sleep(500);
      expect(published).toBe(false);

      await node!.start();
      const [id] = await during;
      expect(typeof id).toBe('string');
      await waitFor(() => bodies.includes('during'), 10_000, 'the consumer to resume by itself');
      await publisher.publish(queue, [{ body: 'after' }]);
      await waitFor(() => bodies.includes('after'), 10_000, 'a message published after recovery');
      expect(bodies.filter((b) => b === 'before')).toHaveLength(1);
      // Each handle has a publishing and a consuming connection; an idle one may still be in
      // its backoff: both handles report connected again within 10 s.
      await waitFor(
        () => consumerStatus.at(-1) === 'connected' && publisherStatus.at(-1) === 'connected',
        10_000,
        'both handles to report connected',
      );
    },
  );

  it(
    'loses none of 10,000 tasks shared by 3 consumers while the node restarts',
    { timeout: 300_000 },
    async () => {
      const total = 10_000;
      const publisher = await open();
      const consumers = [await open(), await open(), await open()];
      const queue = `faults.restart.${randomUUID().slice(0, 8)}`;
      await publisher.declareQueue(queue);
      const seen = new Map<string, number>();
      let deliveries = 0;
      for (const c of consumers) {
        await c.consume(
          queue,
          async (d) => {
            deliveries++;
            seen.set(d.id, (seen.get(d.id) ?? 0) + 1);
            await d.ack();
          },
          { prefetch: 50 },
        );
      }
      const ids = Array.from({ length: total }, (_, i) => `task-${i}`);
      let restarted = false;
      const restart = (async () => {
        await waitFor(() => seen.size >= total / 4, 120_000, 'a quarter of the tasks');
        await node!.stopNode();
        await node!.start();
        restarted = true;
      })();
      for (let i = 0; i < total; i += 200) {
        await publisher.publish(
          queue,
          ids.slice(i, i + 200).map((id) => ({ id, body: JSON.stringify({ n: id }) })),
        );
      }
      await restart;
      expect(restarted).toBe(true);
      await waitFor(() => seen.size === total, 120_000, `all ${total} tasks to arrive`);
      const missing = ids.filter((id) => !seen.has(id));
      expect(missing).toEqual([]);
      const duplicates = [...seen.values()].filter((n) => n > 1).length;
      console.log(
        `amqp restart test: ${total} published, ${seen.size} distinct ids received, ` +
          `${deliveries} deliveries, ${duplicates} ids delivered more than once`,
      );
    },
  );
});
