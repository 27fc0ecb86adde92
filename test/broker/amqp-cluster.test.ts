import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AmqpBroker } from '../../src/broker/amqp/index.js';
import { waitFor } from '../support/wait.js';
import type { Broker } from '../../src/broker/contract.js';
import { startCluster, type RabbitNode } from '../support/rabbitmq.mjs';

// Three nodes on loopback; the task queue is a quorum queue replicated on all three.
let nodes: RabbitNode[] = [];
const handles: Broker[] = [];

beforeAll(async () => {
  nodes = await startCluster(3);
}, 240_000);

afterAll(async () => {
  await Promise.allSettled(handles.map((h) => h.close()));
  for (const n of nodes) await n.stop().catch(() => {});
}, 240_000);

async function open(node: RabbitNode): Promise<AmqpBroker> {
  const broker = await AmqpBroker.open(node.url);
  handles.push(broker);
  return broker;
}

/** The node leading quorum queue `queue`, from `rabbitmqctl list_queues name leader`. */
async function leaderOf(queue: string, via: RabbitNode = nodes[0]!): Promise<RabbitNode> {
  const out = await via.ctl(['list_queues', 'name', 'leader', '--quiet', '--no-table-headers']);
  const line = out.split('\n').find((l) => l.split(/\s+/)[0] === queue);
  const leader = nodes.find((n) => line?.includes(n.name));
  if (!leader) throw new Error(`no leader for "${queue}" in: ${out}`);
  return leader;
}

describe('AMQP broker on a 3-node RabbitMQ cluster', () => {
  it(
    'loses no confirmed task when the node leading the task queue stops mid-run',
    { timeout: 180_000 },
    async () => {
      const queue = 'cluster-tasks';
      // Declared through node 0: a quorum queue's leader starts on the declaring node.
      const declarer = await open(nodes[0]!);
      await declarer.declareQueue(queue);
      const leader = await leaderOf(queue);
      const others = nodes.filter((n) => n !== leader);
      // Producer and consumer talk to the two nodes that survive.
      const producer = await open(others[0]!);
      const consumer = await open(others[1]!);
      await declarer.close();

      const received = new Set<string>();
      await consumer.consume(
        queue,
        async (d) => {
          received.add(d.id);
          await d.ack();
        },
        { prefetch: 200 },
      );

      const confirmed: string[] = [];
      let failed = 0;
      let stopped: Promise<void> | undefined;
      for (let batch = 0; batch < 40; batch++) {
        const messages = Array.from({ length: 100 }, (_, i) => ({
          id: `t-${batch}-${i}`,
          body: JSON.stringify({ batch, i }),
        }));
        try {
          await producer.publish(queue, messages);
          confirmed.push(...messages.map((m) => m.id));
        } catch {
          // Not confirmed: the producer may retry; it is not counted as confirmed.
          failed++;
        }
        if (batch === 10) stopped = leader.stopNode();
      }
      await stopped;
      expect(confirmed.length).toBeGreaterThanOrEqual(3000);
      await waitFor(
        () => confirmed.every((id) => received.has(id)),
        90_000,
        'every confirmed task',
      );
      const lost = confirmed.filter((id) => !received.has(id));
      expect(lost).toEqual([]);
      expect(await leaderOf(queue, others[0])).not.toBe(leader);
      process.stderr.write(
        `cluster: ${confirmed.length} confirmed (${failed} batches not confirmed), ${received.size} received, ${lost.length} lost; leader ${leader.name} stopped\n`,
      );
    },
  );
});
