import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { BrokerStatus, Delivery } from '../../src/broker/contract.js';
import { GatewayBroker } from '../../src/broker/gateway/index.js';
import { openBroker } from '../../src/broker/open.js';
import { BrokerError, ErrorCode, NotFoundError } from '../../src/protocol/errors.js';
import { gatherWorkerReports, serveStatusRequests } from '../../src/worker/control.js';
import { waitFor } from '../support/wait.js';
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

  it('purges, pauses and resumes through the gateway with an admin token, as its broker can; 403 for other roles', async () => {
    const g = await startGateway();
    gateways.push(g);
    const admin = await open(g, TOKENS.admin);
    const producer = await open(g, TOKENS.producer);
    // The embedded broker behind the gateway can do both: the client says so.
    expect([admin.capabilities.purge, admin.capabilities.pause]).toEqual([true, true]);
    await admin.declareQueue('managed');
    await producer.publish('managed', [{ body: 'a' }, { body: 'b' }]);
    await expect(producer.purgeQueue('managed')).rejects.toMatchObject({
      code: ErrorCode.Forbidden,
    });
    await expect(producer.pauseQueue('managed')).rejects.toMatchObject({
      code: ErrorCode.Forbidden,
    });
    expect((await admin.stats('managed')).ready).toBe(2);
    await admin.pauseQueue('managed');
    expect((await admin.stats('managed')).paused).toBe(true);
    await admin.resumeQueue('managed');
    expect((await admin.stats('managed')).paused).toBe(false);
    expect(await admin.purgeQueue('managed')).toBe(2);
    expect((await admin.stats('managed')).ready).toBe(0);
    // An unknown queue is the NotFoundError a broker itself throws, with the closest name.
    await expect(admin.purgeQueue('managd')).rejects.toBeInstanceOf(NotFoundError);
    await expect(admin.purgeQueue('managd')).rejects.toThrow('did you mean "managed"');
  });

  it('rejects topics with a clear error, and the worker status channel pushes reports instead', async () => {
    const g = await startGateway();
    gateways.push(g);
    const h = await open(g);
    expect((h.capabilities as { topics?: boolean }).topics).toBe(false);
    await expect(h.publishTopic('a.b', [{ body: 'x' }])).rejects.toThrow(
      /topics are not available through the HTTP gateway/,
    );
    await expect(h.subscribe('a.#', () => {})).rejects.toThrow(/topics are not available/);
    let asked = 0;
    const control = await serveStatusRequests(h, () => {
      asked++;
      return {
        worker: { id: 'w1', host: 'h', pid: 1 },
        queue: 'q',
        startedAt: 0,
        done: 0,
        failed: 0,
        deadLettered: 0,
        inFlight: 0,
        rate: 0,
      };
    });
    await control.cancel();
    expect(asked).toBe(1);
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
    await waitFor(() => statuses.includes('reconnecting'), 10_000, '"reconnecting"');
    expect(statuses).toEqual(['reconnecting']);
    expect(published).toBe(false);
    fault!.setStatus('connected');
    const ids = await publishing;
    expect(ids).toHaveLength(1);
    expect(statuses).toEqual(['reconnecting', 'connected']);
    expect((await g.broker.stats(q)).ready).toBe(1);
  });

  it('acks a batch in one request, and lease by lease through a gateway without the batch route', async () => {
    const g = await startGateway();
    gateways.push(g);
    // A proxy in front of the gateway that counts requests and, once told to, answers 404 to
    // POST /v1/leases/ack as a gateway from before that route would.
    const seen: string[] = [];
    let old = false;
    const proxy = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      if (old && req.method === 'POST' && req.url === '/v1/leases/ack') {
        req.resume();
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'NOT_FOUND', message: 'no such route' } }));
        return;
      }
      const upstream = request(
        `${g.url}${req.url}`,
        { method: req.method, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      req.pipe(upstream);
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    try {
      const { port } = proxy.address() as AddressInfo;
      const h = await GatewayBroker.open({ url: `http://127.0.0.1:${port}`, token: TOKENS.worker });
      handles.push(h);
      const q = `client.ackall.${process.pid}`;
      await h.declareQueue(q);
      for (const round of [1, 2]) {
        old = round === 2;
        await h.publish(
          q,
          Array.from({ length: 5 }, (_, i) => ({ body: `${round}-${i}` })),
        );
        const got: Delivery[] = [];
        const consumer = await h.consume(q, (d) => void got.push(d), { prefetch: 10 });
        await waitFor(() => got.length === 5, 10_000, 'five deliveries');
        seen.length = 0;
        await consumer.ackAll(got);
        const acks = seen.filter((r) => r.includes('/ack'));
        expect(acks, `round ${round}`).toEqual(
          round === 1
            ? ['POST /v1/leases/ack']
            : [
                'POST /v1/leases/ack',
                ...Array(5).fill(expect.stringMatching(/^POST \/v1\/leases\/[^/]+\/ack$/)),
              ],
        );
        await consumer.cancel();
        await waitFor(async () => (await g.broker.stats(q)).inFlight === 0, 10_000, 'the acks');
        expect(await g.broker.stats(q)).toMatchObject({ ready: 0, inFlight: 0 });
      }
    } finally {
      await new Promise((r) => proxy.close(r));
    }
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
