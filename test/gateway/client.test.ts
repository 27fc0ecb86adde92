import { afterEach, describe, expect, it } from 'vitest';
import type { BrokerStatus } from '../../src/broker/contract.js';
import { GatewayBroker } from '../../src/broker/gateway/index.js';
import { openBroker } from '../../src/broker/open.js';
import { BrokerError, ErrorCode } from '../../src/protocol/errors.js';
import { gatherWorkerReports, serveStatusRequests } from '../../src/worker/control.js';
import { FaultBroker } from './fault-broker.js';
import { TOKENS, startGateway, type TestGateway } from './helpers.js';

const gateways: TestGateway[] = [];
const handles: GatewayBroker[] = [];
afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.close()));
  await Promise.all(gateways.splice(0).map((g) => g.close()));
});

async function open(g: TestGateway, token: string = TOKENS.worker): Promise<GatewayBroker> {
  const h = await GatewayBroker.open({ url: g.url, token });
  handles.push(h);
  return h;
}

describe('GatewayBroker', () => {
  it('opens from an http URL with the token in QTUNE_TOKEN, and refuses a wrong token', async () => {
    const g = await startGateway();
    gateways.push(g);
    const saved = process.env.QTUNE_TOKEN;
    try {
      process.env.QTUNE_TOKEN = TOKENS.producer;
      const viaUrl = await openBroker(g.url);
      expect(viaUrl.kind).toBe('gateway');
      await viaUrl.close();
      const refused = openBroker(g.url, { token: 'wrong-secret-0123456789abcdef' });
      await expect(refused).rejects.toBeInstanceOf(BrokerError);
      await expect(refused).rejects.toMatchObject({ code: ErrorCode.BrokerUnavailable });
      await expect(refused).rejects.toThrow(/401/);
    } finally {
      if (saved === undefined) delete process.env.QTUNE_TOKEN;
      else process.env.QTUNE_TOKEN = saved;
    }
  });

  it('rejects topics with a clear error, and the worker status channel does without them', async () => {
    const g = await startGateway();
    gateways.push(g);
    const h = await open(g);
    expect((h.capabilities as { topics?: boolean }).topics).toBe(false);
    await expect(h.publishTopic('a.b', [{ body: 'x' }])).rejects.toThrow(
      /topics are not available through the HTTP gateway/,
    );
    await expect(h.subscribe('a.#', () => {})).rejects.toThrow(/topics are not available/);
    const control = await serveStatusRequests(h, () => {
      throw new Error('never asked');
    });
    await control.cancel();
    expect(await gatherWorkerReports(h, 100)).toEqual([]);
  });

  it('retries while the broker behind the gateway reconnects, reporting reconnecting then connected', async () => {
    let fault: FaultBroker | undefined;
    const g = await startGateway({}, (b) => (fault = new FaultBroker(b)));
    gateways.push(g);
    const h = await open(g);
    const statuses: BrokerStatus[] = [];
    h.on('status', (s) => statuses.push(s));
    const q = `client.retry.${process.pid}`;
    await h.declareQueue(q);
    fault!.setStatus('reconnecting');
    let published = false;
    const publishing = h.publish(q, [{ body: 'waits' }]).then((ids) => {
      published = true;
      return ids;
    });
    const until = Date.now() + 10_000;
    while (!statuses.includes('reconnecting') && Date.now() < until) await sleep(20);
    expect(statuses).toEqual(['reconnecting']);
    expect(published).toBe(false);
    fault!.setStatus('connected');
    const ids = await publishing;
    expect(ids).toHaveLength(1);
    expect(statuses).toEqual(['reconnecting', 'connected']);
    expect((await g.broker.stats(q)).ready).toBe(1);
  });

  it('refuses a binary body, which the gateway cannot carry', async () => {
    const g = await startGateway();
    gateways.push(g);
    const h = await open(g);
    await expect(h.publish('any', [{ body: Buffer.from([0xff, 0xfe, 0x00]) }])).rejects.toThrow(
      /UTF-8 text bodies only/,
    );
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
