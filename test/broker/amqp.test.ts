import { afterAll, beforeAll } from 'vitest';
import { AmqpBroker } from '../../src/broker/amqp/index.js';
import { brokerConformanceSuite } from '../../src/broker/conformance/suite.js';
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
