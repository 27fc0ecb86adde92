import { afterAll, beforeAll, describe } from 'vitest';
import { NatsBroker } from '../../src/broker/nats/index.js';
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
