import { describe, expect, it } from 'vitest';
import { BrokerError } from '../../src/protocol/errors.js';
import { WAIT_MS, waitFor } from '../support/wait.js';
import { brokerConformanceSuite } from './conformance/suite.js';
import type { Delivery } from '../../src/broker/contract.js';
import { MemoryBroker, MemoryBus, sharedMemoryBus } from '../../src/broker/memory/index.js';
import { openBroker } from '../../src/broker/open.js';

// One bus for the whole suite: every test uses its own queue names, and the handles a test
// opens share queues like separate clients of one broker.
const bus = new MemoryBus();
brokerConformanceSuite({ name: 'memory', open: async () => new MemoryBroker(bus) });

describe('MemoryBroker', () => {
  it('redelivers the leases of a crashed handle once they expire', async () => {
    const bus = new MemoryBus();
    const a = new MemoryBroker(bus);
    const b = new MemoryBroker(bus);
    try {
      await a.declareQueue('jobs', { leaseMs: 200 });
      await a.declareQueue('replies', { temporary: true });
      await a.publish('jobs', [
        { id: 'j1', body: 'x' },
        { id: 'j2', body: 'y' },
      ]);
      const held: Delivery[] = [];
      await a.consume('jobs', (d) => void held.push(d), { prefetch: 2 });
      await waitFor(() => held.length === 2);
      a.crash();
      await expect(held[0]!.ack()).rejects.toBeInstanceOf(BrokerError);
      expect(await b.listQueues()).not.toContain('replies');
      expect((await b.stats('jobs')).inFlight).toBe(2);
      const seen: Delivery[] = [];
      await b.consume('jobs', async (d) => {
        seen.push(d);
        await d.ack();
      });
      await waitFor(() => seen.length === 2);
      expect(seen.map((d) => [d.id, d.deliveryCount])).toEqual([
        ['j1', 2],
        ['j2', 2],
      ]);
      await expect(a.close()).resolves.toBeUndefined();
    } finally {
      await b.close();
    }
  });

  it('deletes the dead-letter queue of a temporary queue along with it', async () => {
    const bus = new MemoryBus();
    const a = new MemoryBroker(bus);
    const b = new MemoryBroker(bus);
    try {
      await a.declareQueue('replies', { temporary: true });
      await a.publish('replies', [{ body: 'x' }]);
      await a.consume('replies', (d) => d.deadLetter('unwanted'));
      await waitFor(async () => (await b.stats('replies')).deadLettered === 1);
      expect(await b.listQueues()).toEqual(['replies', 'replies.dead']);
      await a.close();
      expect(await b.listQueues()).toEqual([]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('never calls a handler inside publish', async () => {
    const broker = new MemoryBroker();
    try {
      await broker.declareQueue('q');
      let calls = 0;
      await broker.consume('q', async (d) => {
        calls++;
        await d.ack();
      });
      const publishing = broker.publish('q', [{ body: 'a' }]);
      expect(calls).toBe(0);
      await publishing;
      await waitFor(() => calls === 1);
    } finally {
      await broker.close();
    }
  });

  it('nacks a delivery whose handler throws and reports the error', async () => {
    const broker = new MemoryBroker();
    try {
      await broker.declareQueue('q', { maxDeliveries: 2 });
      const errors: Error[] = [];
      broker.on('error', (e) => errors.push(e));
      await broker.consume('q', () => {
        throw new Error('handler exploded');
      });
      await broker.publish('q', [{ body: 'a' }]);
      await waitFor(async () => (await broker.stats('q')).deadLettered === 1);
      expect(errors).toHaveLength(2);
      expect(errors[0]!.message).toContain('handler exploded');
      const dead: Delivery[] = [];
      await broker.consume('q.dead', (d) => void dead.push(d));
      await waitFor(() => dead.length === 1);
      expect(dead[0]!.headers['x-qtune-dead-reason']).toBe('handler exploded');
    } finally {
      await broker.close();
    }
  });

  it('shares one bus per name between memory:// URLs and sharedMemoryBus', async () => {
    const name = `bus-${Math.random().toString(36).slice(2)}`;
    expect(sharedMemoryBus(name)).toBe(sharedMemoryBus(name));
    expect(sharedMemoryBus(name)).not.toBe(sharedMemoryBus(`${name}-other`));
    const a = await openBroker(`memory://${name}`);
    const b = new MemoryBroker(sharedMemoryBus(name));
    try {
      expect(a.kind).toBe('memory');
      await a.declareQueue('shared');
      await a.publish('shared', [{ body: 'hello' }]);
      expect((await b.stats('shared')).ready).toBe(1);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('rejects unknown queues and invalid options with errors naming the value', async () => {
    const broker = new MemoryBroker();
    try {
      await expect(broker.publish('nope', [{ body: 'x' }])).rejects.toThrow(/queue "nope"/);
      await expect(broker.declareQueue('q', { leaseMs: -1 })).rejects.toThrow(/leaseMs.*-1/);
      await broker.declareQueue('q');
      await expect(broker.consume('q', () => {}, { prefetch: 0 })).rejects.toThrow(/prefetch.*0/);
      await expect(broker.subscribe('a..b', () => {})).rejects.toThrow(/a\.\.b/);
    } finally {
      await broker.close();
    }
  });

  it('forgets the delayed messages of a deleted queue', async () => {
    const broker = new MemoryBroker();
    try {
      await broker.declareQueue('q');
      await broker.publish('q', [{ body: 'x', delayMs: 50 }]);
      await broker.deleteQueue('q');
      expect(await broker.listQueues()).toEqual([]);
      await broker.declareQueue('q');
      const seen: Delivery[] = [];
      await broker.consume('q', (d) => void seen.push(d));
      // Delayed as long but published later, it comes due after the forgotten one would have.
      await broker.publish('q', [{ body: 'canary', delayMs: 50 }]);
      await waitFor(() => seen.length > 0, WAIT_MS, 'the canary');
      expect(seen.map((d) => d.body.toString())).toEqual(['canary']);
      await seen[0]!.ack();
      expect(await broker.stats('q')).toMatchObject({ ready: 0, delayed: 0, inFlight: 0 });
    } finally {
      await broker.close();
    }
  });
});
