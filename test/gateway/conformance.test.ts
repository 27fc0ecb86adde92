import { afterAll, beforeAll } from 'vitest';
import { brokerConformanceSuite } from '../broker/conformance/suite.js';
import { GatewayBroker } from '../../src/broker/gateway/index.js';
import { TOKENS, startGateway, type TestGateway } from './helpers.js';

// One gateway over one embedded broker for the whole suite; every test uses its own queues. The
// child processes of the multi-process test open the gateway's URL with `openBroker(url)`, which
// reads the token from QTUNE_TOKEN.
let gateway: TestGateway;
process.env.QTUNE_TOKEN = TOKENS.admin;

beforeAll(async () => {
  gateway = await startGateway();
  target.url = gateway.url;
});

afterAll(async () => {
  await gateway?.close();
});

const target: { name: string; open: () => Promise<GatewayBroker>; url?: string } = {
  name: 'gateway',
  open: () => GatewayBroker.open({ url: gateway.url, token: TOKENS.admin, pollWaitMs: 5_000 }),
};

brokerConformanceSuite(target);
