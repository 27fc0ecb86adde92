import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { TestContext } from 'vitest';
import { BrokerError, ErrorCode, NotFoundError } from '../../../src/protocol/errors.js';
import type {
  Broker,
  BrokerStatus,
  ConsumeOptions,
  Consumer,
  Delivery,
  QueueStats,
} from '../../../src/broker/contract.js';
import {
  DEAD_LETTER_DELIVERIES_HEADER,
  DEAD_LETTER_QUEUE_HEADER,
  DEAD_LETTER_REASON_HEADER,
  deadLetterQueueOf,
  hasCapability,
} from '../../../src/broker/contract.js';
import type { OptionalCapability } from '../../../src/broker/contract.js';
import { onJsonLines } from '../../support/json-lines.js';
import { sleep, WAIT_MS, waitFor } from '../../support/wait.js';

/** A Broker implementation under test. */
export interface ConformanceTarget {
  /** Shown in the suite's title, e.g. `memory`. */
  name: string;
  /**
   * Opens a new handle (one connection). Handles opened during one test must reach the same
   * broker, so that they share queues like separate clients.
   */
  open: () => Promise<Broker>;
  /**
   * URL that `openBroker(url)` in a child process resolves to the same broker; needed by the
   * multi-process tests when `capabilities.multiProcess` (default: none, those tests skip).
   */
  url?: string;
}

/** Short lease used by tests that wait for a lease to expire. */
const LEASE_MS = 400;
/** How long a test watches for something that must not happen. */
const QUIET_MS = 300;

const FIXTURE = fileURLToPath(new URL('../../fixtures/conformance-consumer.mjs', import.meta.url));

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

function uniqueName(label: string): string {
  return `conformance.${label}.${randomUUID().slice(0, 8)}`;
}

type Settle = 'ack' | 'none';

/** A consumer that records every delivery and settles it as told. */
interface Inbox {
  readonly deliveries: Delivery[];
  /** Deliveries of canaries (see `leasesTakenBeforeExpired`), kept apart and never settled. */
  readonly canaries: Delivery[];
  readonly consumer: Consumer;
  ids(): string[];
  bodies(): string[];
}

async function collect(
  broker: Broker,
  queue: string,
  settle: Settle,
  options: ConsumeOptions = {},
): Promise<Inbox> {
  const deliveries: Delivery[] = [];
  const canaries: Delivery[] = [];
  const consumer = await broker.consume(
    queue,
    async (d) => {
      if (d.headers[CANARY_HEADER] === true) return void canaries.push(d);
      deliveries.push(d);
      if (settle === 'ack') await d.ack();
    },
    options,
  );
  return inbox(deliveries, consumer, canaries);
}

async function subscribeInbox(broker: Broker, pattern: string): Promise<Inbox> {
  const deliveries: Delivery[] = [];
  const consumer = await broker.subscribe(pattern, async (d) => {
    deliveries.push(d);
    await d.ack();
  });
  return inbox(deliveries, consumer);
}

function inbox(deliveries: Delivery[], consumer: Consumer, canaries: Delivery[] = []): Inbox {
  return {
    deliveries,
    canaries,
    consumer,
    ids: () => deliveries.map((d) => d.id),
    bodies: () => deliveries.map((d) => d.body.toString('utf8')),
  };
}

/** Header that marks a canary message; `collect` keeps canaries apart and never settles them. */
const CANARY_HEADER = 'conformance-canary';

/**
 * Resolves once every lease on `queue` taken before the call has expired, as a positive signal
 * instead of a fixed sleep: a canary published now, taken by one of `boxes` and never settled,
 * comes back when its lease (the queue's `leaseMs`) ends, and leases end in the order they were
 * taken. So a message that would wrongly come back after its lease has done so by then, even
 * on a machine too loaded for a sleep to be long enough. The canary is then acked, leaving the
 * queue as it was; `boxes` need two free prefetch slots between them (a consumer may count a
 * delivery whose lease expired against its prefetch until it is settled).
 */
async function leasesTakenBeforeExpired(
  broker: Broker,
  queue: string,
  boxes: readonly Inbox[],
): Promise<void> {
  // Without leases nothing comes back by itself: watching a while is all there is to do.
  if (!hasCapability(broker, 'leases')) return sleep(QUIET_MS);
  const [id] = await broker.publish(queue, [
    { body: 'canary', headers: { [CANARY_HEADER]: true } },
  ]);
  const seen = () => boxes.flatMap((box) => box.canaries).filter((d) => d.id === id);
  await waitFor(() => seen().length >= 2, WAIT_MS, `the canary on "${queue}" back after its lease`);
  // The live delivery first; the stale one's ack is ignored but frees its consumer's slot.
  for (const d of seen().reverse()) await d.ack();
}

async function statsMatch(
  broker: Broker,
  queue: string,
  expected: Partial<Omit<QueueStats, 'queue'>>,
): Promise<void> {
  let last: QueueStats | undefined;
  try {
    await waitFor(
      async () => {
        last = await broker.stats(queue);
        return Object.entries(expected).every(
          ([key, value]) => last![key as keyof QueueStats] === value,
        );
      },
      WAIT_MS,
      `stats of "${queue}" matching ${JSON.stringify(expected)}`,
    );
  } catch (err) {
    throw new Error(`${(err as Error).message}; last seen ${JSON.stringify(last)}`, { cause: err });
  }
}

/** Skips the test, saying why, unless `broker` has the optional capability `name`. */
function needs(ctx: TestContext, broker: Broker, name: OptionalCapability): void {
  ctx.skip(!hasCapability(broker, name), `${broker.kind} broker declares ${name}: false`);
}

function sorted(values: readonly string[]): string[] {
  return [...values].sort();
}

/**
 * The one conformance suite of the Broker contract. It uses only the contract, so it runs
 * unchanged against every implementation; tests needing a missing capability skip with the
 * reason.
 */
export function brokerConformanceSuite(target: ConformanceTarget): void {
  describe(`Broker conformance: ${target.name}`, () => {
    const handles: Broker[] = [];
    const cleanups: (() => void)[] = [];

    /** Opens a handle that is closed after the test. */
    async function open(): Promise<Broker> {
      const broker = await target.open();
      handles.push(broker);
      return broker;
    }

    afterEach(async () => {
      for (const cleanup of cleanups.splice(0)) cleanup();
      const open = handles.splice(0);
      const results = await Promise.allSettled(open.map((h) => h.close()));
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw new Error('closing a broker handle failed', { cause: failed.reason });
    });

    describe('publish and consume', () => {
      it('resolves publish with the given or fresh ids and delivers body, headers and id', async () => {
        const broker = await open();
        const queue = uniqueName('ids');
        await broker.declareQueue(queue);
        const given = `given-${randomUUID()}`;
        const ids = await broker.publish(queue, [
          { id: given, body: 'one' },
          { body: Buffer.from('two'), headers: { k: 'v', n: 2, t: true } },
        ]);
        expect(ids).toHaveLength(2);
        expect(ids[0]).toBe(given);
        expect(typeof ids[1]).toBe('string');
        expect(ids[1]).not.toBe('');
        expect(ids[1]).not.toBe(given);

        const box = await collect(broker, queue, 'ack');
        await waitFor(() => box.deliveries.length === 2, WAIT_MS, 'two deliveries');
        const byId = new Map(box.deliveries.map((d) => [d.id, d]));
        expect(sorted([...byId.keys()])).toEqual(sorted(ids));
        const first = byId.get(ids[0]!)!;
        const second = byId.get(ids[1]!)!;
        expect(Buffer.isBuffer(first.body)).toBe(true);
        expect(first.body.toString()).toBe('one');
        expect(second.body.toString()).toBe('two');
        expect(second.headers).toMatchObject({ k: 'v', n: 2, t: true });
        expect(first.queue).toBe(queue);
        expect(first.deliveryCount).toBe(1);
      });

      it('delivers messages of one priority in publish order', async () => {
        const broker = await open();
        const queue = uniqueName('fifo');
        await broker.declareQueue(queue);
        const batch = (from: number) =>
          Array.from({ length: 10 }, (_, i) => ({ body: `m${from + i}` }));
        await broker.publish(queue, batch(0));
        await broker.publish(queue, batch(10));
        const box = await collect(broker, queue, 'ack', { prefetch: 1 });
        await waitFor(() => box.deliveries.length === 20, WAIT_MS, '20 deliveries');
        expect(box.bodies()).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
      });

      it('delivers higher priorities first, in publish order within a priority', async (ctx) => {
        const broker = await open();
        needs(ctx, broker, 'priorities');
        const queue = uniqueName('priority');
        await broker.declareQueue(queue, { priorities: 10 });
        await broker.publish(queue, [
          { body: 'a0', priority: 0 },
          { body: 'b5', priority: 5 },
          { body: 'c1', priority: 1 },
          { body: 'd9', priority: 9 },
          { body: 'e5', priority: 5 },
          { body: 'f0', priority: 0 },
        ]);
        await statsMatch(broker, queue, { ready: 6 });
        const box = await collect(broker, queue, 'ack', { prefetch: 1 });
        await waitFor(() => box.deliveries.length === 6, WAIT_MS, '6 deliveries');
        expect(box.bodies()).toEqual(['d9', 'b5', 'e5', 'c1', 'a0', 'f0']);
        expect(box.deliveries.map((d) => d.priority)).toEqual([9, 5, 5, 1, 0, 0]);
      });

      it('delivers a message published with delayMs only after the delay', async (ctx) => {
        const broker = await open();
        needs(ctx, broker, 'delay');
        const queue = uniqueName('delayed-publish');
        await broker.declareQueue(queue);
        const received: number[] = [];
        await broker.consume(queue, async (d) => {
          received.push(Date.now());
          await d.ack();
        });
        const delayMs = 1000;
        const publishedAt = Date.now();
        await broker.publish(queue, [{ body: 'later', delayMs }]);
        await waitFor(() => received.length === 1, WAIT_MS, 'the delayed message');
        // Loose on purpose: only "not in the first part of the delay" is asserted.
        expect(received[0]! - publishedAt).toBeGreaterThanOrEqual(delayMs / 2);
        await statsMatch(broker, queue, { delayed: 0, ready: 0, inFlight: 0 });
      });

      it('removes an acked message for good', async () => {
        const broker = await open();
        const queue = uniqueName('ack');
        await broker.declareQueue(queue, { leaseMs: LEASE_MS });
        await broker.publish(queue, [{ body: 'x' }]);
        const box = await collect(broker, queue, 'ack');
        await waitFor(() => box.deliveries.length === 1, WAIT_MS, 'one delivery');
        await statsMatch(broker, queue, { ready: 0, inFlight: 0, delayed: 0 });
        await leasesTakenBeforeExpired(broker, queue, [box]);
        expect(box.deliveries).toHaveLength(1);
        await statsMatch(broker, queue, { ready: 0, inFlight: 0, delayed: 0 });
      });
    });

    describe('settling', () => {
      it('publishes with ackWithPublish before the ack lands, even after the lease was lost', async () => {
        const a = await open();
        const b = await open();
        const queue = uniqueName('ack-publish');
        const results = uniqueName('ack-publish-results');
        await a.declareQueue(queue, { leaseMs: LEASE_MS });
        await a.declareQueue(results);
        await a.publish(queue, [{ body: 'task-1' }, { body: 'task-2' }]);
        const first = await collect(a, queue, 'none', { prefetch: 2 });
        await waitFor(() => first.deliveries.length === 2, WAIT_MS, 'two deliveries');
        await first.deliveries[0]!.ackWithPublish(results, [{ body: 'result-1', id: 'r1' }]);
        await statsMatch(a, queue, { ready: 0, inFlight: 1 });
        await statsMatch(a, results, { ready: 1 });

        // task-2's lease expires and B takes it; A's late hand-in still publishes, but its ack
        // must not remove the message B now holds.
        await first.consumer.cancel();
        const second = await collect(b, queue, 'none', { prefetch: 1 });
        await waitFor(() => second.deliveries.length === 1, WAIT_MS, 'redelivery to B');
        await first.deliveries[1]!.ackWithPublish(results, [{ body: 'result-2-late', id: 'r2' }]);
        await statsMatch(a, results, { ready: 2 });
        await statsMatch(a, queue, { inFlight: 1 });
        await second.deliveries[0]!.ackWithPublish(results, [{ body: 'result-2', id: 'r2b' }]);
        await statsMatch(a, queue, { ready: 0, inFlight: 0 });
        const got = await collect(b, results, 'ack');
        await waitFor(() => got.deliveries.length === 3, WAIT_MS, 'three results');
        expect(sorted(got.bodies())).toEqual(['result-1', 'result-2', 'result-2-late']);
      });

      it('redelivers a nacked message with deliveryCount + 1 and the same id, body and headers', async () => {
        const broker = await open();
        const queue = uniqueName('nack');
        await broker.declareQueue(queue);
        const [id] = await broker.publish(queue, [{ body: 'payload', headers: { h: 'kept' } }]);
        const seen: Delivery[] = [];
        await broker.consume(queue, async (d) => {
          seen.push(d);
          if (d.deliveryCount === 1) await d.nack({ error: 'first try failed' });
          else await d.ack();
        });
        await waitFor(() => seen.length === 2, WAIT_MS, 'a redelivery');
        expect(seen.map((d) => d.deliveryCount)).toEqual([1, 2]);
        for (const d of seen) {
          expect(d.id).toBe(id);
          expect(d.body.toString()).toBe('payload');
          expect(d.headers).toMatchObject({ h: 'kept' });
        }
        await statsMatch(broker, queue, { ready: 0, inFlight: 0, delayed: 0 });
      });

      it('holds back a message nacked with a delay until the delay passes', async (ctx) => {
        const broker = await open();
        needs(ctx, broker, 'delay');
        const queue = uniqueName('nack-delay');
        await broker.declareQueue(queue);
        await broker.publish(queue, [{ body: 'later' }]);
        const delayMs = 1500;
        const seen: { delivery: Delivery; at: number }[] = [];
        let nackedAt = 0;
        await broker.consume(queue, async (d) => {
          seen.push({ delivery: d, at: Date.now() });
          if (d.deliveryCount > 1) return d.ack();
          nackedAt = Date.now();
          await d.nack({ delayMs, error: 'back off' });
        });
        await waitFor(() => seen.length === 1, WAIT_MS, 'first delivery');
        await statsMatch(broker, queue, { delayed: 1, ready: 0, inFlight: 0 });
        await waitFor(() => seen.length === 2, WAIT_MS, 'the delayed redelivery');
        // Loose on purpose: only "not in the first part of the delay" is asserted.
        expect(seen[1]!.at - nackedAt).toBeGreaterThanOrEqual(delayMs / 2);
        expect(seen[1]!.delivery.deliveryCount).toBe(2);
        await statsMatch(broker, queue, { delayed: 0, ready: 0, inFlight: 0 });
      });

      it('does not count a released delivery', async (ctx) => {
        const broker = await open();
        needs(ctx, broker, 'releaseUncounted');
        const queue = uniqueName('release');
        await broker.declareQueue(queue);
        const [id] = await broker.publish(queue, [{ body: 'r' }]);
        const seen: Delivery[] = [];
        await broker.consume(queue, async (d) => {
          seen.push(d);
          if (seen.length === 1) await d.release();
          else await d.ack();
        });
        await waitFor(() => seen.length === 2, WAIT_MS, 'delivery after release');
        expect(seen.map((d) => d.id)).toEqual([id, id]);
        expect(seen.map((d) => d.deliveryCount)).toEqual([1, 1]);
      });

      it('ignores a second settle of the same delivery', async () => {
        const broker = await open();
        const queue = uniqueName('double-settle');
        await broker.declareQueue(queue, { leaseMs: LEASE_MS });
        await broker.publish(queue, [{ body: 'once' }]);
        const box = await collect(broker, queue, 'none');
        await waitFor(() => box.deliveries.length === 1, WAIT_MS, 'one delivery');
        const d = box.deliveries[0]!;
        await d.ack();
        await expect(d.ack()).resolves.toBeUndefined();
        await expect(d.nack({ error: 'late' })).resolves.toBeUndefined();
        await expect(d.release()).resolves.toBeUndefined();
        await expect(d.deadLetter('late')).resolves.toBeUndefined();
        await leasesTakenBeforeExpired(broker, queue, [box]);
        expect(box.deliveries).toHaveLength(1);
        await statsMatch(broker, queue, { ready: 0, inFlight: 0, delayed: 0, deadLettered: 0 });
        // The queue still works.
        await broker.publish(queue, [{ body: 'next' }]);
        await waitFor(() => box.deliveries.length === 2, WAIT_MS, 'next delivery');
        expect(box.deliveries[1]!.body.toString()).toBe('next');
        expect(box.deliveries[1]!.deliveryCount).toBe(1);
        await box.deliveries[1]!.ack();
      });
      it('acks many deliveries with ackAll, skipping settled ones, for good', async () => {
        const broker = await open();
        const queue = uniqueName('ack-all');
        await broker.declareQueue(queue, { leaseMs: LEASE_MS });
        await broker.publish(
          queue,
          Array.from({ length: 6 }, (_, i) => ({ body: `m${i}` })),
        );
        const box = await collect(broker, queue, 'none', { prefetch: 10 });
        await waitFor(() => box.deliveries.length === 6, WAIT_MS, 'six deliveries');
        const [first, second, ...rest] = box.deliveries;
        await first!.ack();
        await second!.nack({ error: 'again' });
        await box.consumer.ackAll([first!, second!, ...rest]);
        // Only the nacked one comes back.
        await waitFor(() => box.deliveries.length === 7, WAIT_MS, 'the nacked delivery again');
        const again = box.deliveries[6]!;
        expect(again.body.toString()).toBe(second!.body.toString());
        expect(again.deliveryCount).toBe(2);
        await box.consumer.ackAll([again]);
        await box.consumer.ackAll([]);
        await leasesTakenBeforeExpired(broker, queue, [box]);
        expect(box.deliveries).toHaveLength(7);
        await statsMatch(broker, queue, { ready: 0, inFlight: 0, delayed: 0, deadLettered: 0 });
      });

      it('acks with ackAll after cancel the deliveries still held', async () => {
        const broker = await open();
        const queue = uniqueName('ack-all-cancel');
        await broker.declareQueue(queue, { leaseMs: LEASE_MS });
        await broker.publish(queue, [{ body: 'a' }, { body: 'b' }]);
        const box = await collect(broker, queue, 'none', { prefetch: 10 });
        await waitFor(() => box.deliveries.length === 2, WAIT_MS, 'two deliveries');
        await box.consumer.cancel();
        await box.consumer.ackAll(box.deliveries);
        // A new consumer would receive whatever came back after its lease.
        const watcher = await collect(broker, queue, 'none');
        await leasesTakenBeforeExpired(broker, queue, [watcher]);
        expect(watcher.deliveries).toEqual([]);
        await statsMatch(broker, queue, { ready: 0, inFlight: 0, delayed: 0, deadLettered: 0 });
      });
    });

    describe('leases', () => {
      it('redelivers a message whose lease expired to another consumer and ignores the stale ack', async (ctx) => {
        const a = await open();
        needs(ctx, a, 'leases');
        const b = await open();
        const queue = uniqueName('lease-expiry');
        await a.declareQueue(queue, { leaseMs: LEASE_MS });
        const [id] = await a.publish(queue, [{ body: 'slow' }]);
        const first = await collect(a, queue, 'none', { prefetch: 1 });
        await waitFor(() => first.deliveries.length === 1, WAIT_MS, 'first delivery');
        // Stop A from receiving more; its lease stays unsettled.
        await first.consumer.cancel();

        const second = await collect(b, queue, 'none', { prefetch: 1 });
        await waitFor(() => second.deliveries.length === 1, WAIT_MS, 'redelivery to B');
        expect(second.deliveries[0]!.id).toBe(id);
        expect(second.deliveries[0]!.deliveryCount).toBe(2);

        // A's lease is gone: its ack must not remove the message B now holds.
        await expect(first.deliveries[0]!.ack()).resolves.toBeUndefined();
        await second.deliveries[0]!.nack({ error: 'B gives it back' });
        await waitFor(() => second.deliveries.length === 2, WAIT_MS, 'redelivery after B nacked');
        expect(second.deliveries[1]!.id).toBe(id);
        expect(second.deliveries[1]!.deliveryCount).toBe(3);
        await second.deliveries[1]!.ack();
        await statsMatch(b, queue, { ready: 0, inFlight: 0 });
      });

      it('redelivers the unsettled deliveries of a handle closed without settling', async (ctx) => {
        const a = await open();
        needs(ctx, a, 'leases');
        const b = await open();
        const queue = uniqueName('closed-unsettled');
        await a.declareQueue(queue, { leaseMs: LEASE_MS });
        const [id] = await a.publish(queue, [{ body: 'orphan' }]);
        const first = await collect(a, queue, 'none', { prefetch: 1 });
        await waitFor(() => first.deliveries.length === 1, WAIT_MS, 'first delivery');
        await a.close();

        const second = await collect(b, queue, 'ack');
        await waitFor(() => second.deliveries.length === 1, WAIT_MS, 'redelivery to B');
        expect(second.deliveries[0]!.id).toBe(id);
        expect(second.deliveries[0]!.deliveryCount).toBe(2);
        await statsMatch(b, queue, { ready: 0, inFlight: 0 });
      });

      it('keeps an extended lease past its original expiry', async (ctx) => {
        const a = await open();
        needs(ctx, a, 'leases');
        const b = await open();
        const queue = uniqueName('extend');
        await a.declareQueue(queue, { leaseMs: LEASE_MS });
        await a.publish(queue, [{ body: 'long task' }]);
        const boxes = [
          await collect(a, queue, 'none', { prefetch: 1 }),
          await collect(b, queue, 'none', { prefetch: 1 }),
        ];
        const total = () => boxes.reduce((n, box) => n + box.deliveries.length, 0);
        await waitFor(() => total() === 1, WAIT_MS, 'one delivery');
        const held = boxes.flatMap((box) => box.deliveries)[0]!;
        // Far past the original lease and past the seconds a broker's statistics may lag, so
        // that only a lost extension (not a slow stats check) can bring the task back.
        await held.extendLease(LEASE_MS * 75);
        await sleep(LEASE_MS * 3);
        expect(total()).toBe(1);
        await statsMatch(a, queue, { inFlight: 1, ready: 0 });
        await held.ack();
        await sleep(LEASE_MS * 2);
        expect(total()).toBe(1);
        await statsMatch(a, queue, { inFlight: 0, ready: 0 });
      });
    });

    describe('dead letters', () => {
      it('dead-letters a message after maxDeliveries with the last error as its reason', async (ctx) => {
        const broker = await open();
        needs(ctx, broker, 'deadLetters');
        const queue = uniqueName('max-deliveries');
        const dead = deadLetterQueueOf(queue);
        await broker.declareQueue(queue, { maxDeliveries: 3 });
        const [id] = await broker.publish(queue, [{ body: 'poison', headers: { h: 'kept' } }]);
        const counts: number[] = [];
        await broker.consume(queue, async (d) => {
          counts.push(d.deliveryCount);
          await d.nack({ error: `boom-${d.deliveryCount}` });
        });
        await statsMatch(broker, queue, { deadLettered: 1, ready: 0, inFlight: 0, delayed: 0 });
        expect(counts).toEqual([1, 2, 3]);

        await broker.declareQueue(dead);
        const box = await collect(broker, dead, 'ack');
        await waitFor(() => box.deliveries.length === 1, WAIT_MS, 'the dead letter');
        const d = box.deliveries[0]!;
        expect(d.id).toBe(id);
        expect(d.body.toString()).toBe('poison');
        expect(d.headers.h).toBe('kept');
        expect(String(d.headers[DEAD_LETTER_REASON_HEADER])).toContain('boom-3');
        expect(d.headers[DEAD_LETTER_QUEUE_HEADER]).toBe(queue);
        expect(Number(d.headers[DEAD_LETTER_DELIVERIES_HEADER])).toBe(3);
        // Nothing is left in the queue that could be delivered a fourth time.
        await statsMatch(broker, queue, { ready: 0, inFlight: 0, delayed: 0 });
        expect(counts).toHaveLength(3);
      });

      it('dead-letters at once with the given reason, into the queue named by deadLetterQueue', async (ctx) => {
        const broker = await open();
        needs(ctx, broker, 'deadLetters');
        const queue = uniqueName('explicit-dead');
        const dead = `${queue}.graveyard`;
        await broker.declareQueue(queue, { deadLetterQueue: dead });
        const [id] = await broker.publish(queue, [{ body: 'bad' }]);
        let calls = 0;
        await broker.consume(queue, async (d) => {
          calls++;
          await d.deadLetter('bad-input: field x');
        });
        await statsMatch(broker, queue, { deadLettered: 1, ready: 0, inFlight: 0 });
        await broker.declareQueue(dead);
        const box = await collect(broker, dead, 'ack');
        await waitFor(() => box.deliveries.length === 1, WAIT_MS, 'the dead letter');
        const d = box.deliveries[0]!;
        expect(d.id).toBe(id);
        expect(d.body.toString()).toBe('bad');
        expect(String(d.headers[DEAD_LETTER_REASON_HEADER])).toContain('bad-input: field x');
        expect(d.headers[DEAD_LETTER_QUEUE_HEADER]).toBe(queue);
        expect(Number(d.headers[DEAD_LETTER_DELIVERIES_HEADER])).toBe(1);
        expect(calls).toBe(1);
      });

      it('dead-letters a message older than messageTtlMs with reason EXPIRED', async (ctx) => {
        const broker = await open();
        needs(ctx, broker, 'deadLetters');
        const queue = uniqueName('ttl');
        const dead = deadLetterQueueOf(queue);
        await broker.declareQueue(queue, { messageTtlMs: 300 });
        const [id] = await broker.publish(queue, [{ body: 'stale' }]);
        await sleep(700);
        const live = await collect(broker, queue, 'ack');
        await broker.declareQueue(dead);
        const box = await collect(broker, dead, 'ack');
        await waitFor(() => box.deliveries.length === 1, WAIT_MS, 'the expired message');
        expect(box.deliveries[0]!.id).toBe(id);
        expect(String(box.deliveries[0]!.headers[DEAD_LETTER_REASON_HEADER])).toContain('EXPIRED');
        expect(live.deliveries).toHaveLength(0);
      });
    });

    describe('consumers', () => {
      it('holds at most prefetch unsettled deliveries per consumer', async () => {
        const broker = await open();
        const queue = uniqueName('prefetch');
        await broker.declareQueue(queue);
        await broker.publish(
          queue,
          Array.from({ length: 10 }, (_, i) => ({ body: `p${i}` })),
        );
        const box = await collect(broker, queue, 'none', { prefetch: 3 });
        await waitFor(() => box.deliveries.length === 3, WAIT_MS, '3 deliveries');
        // The broker's own count: the other 7 stay ready, none is leased beyond the 3.
        await statsMatch(broker, queue, { ready: 7, inFlight: 3, consumers: 1 });
        expect(box.deliveries).toHaveLength(3);
        await box.deliveries[0]!.ack();
        await waitFor(() => box.deliveries.length === 4, WAIT_MS, 'a 4th delivery after one ack');
        await statsMatch(broker, queue, { ready: 6, inFlight: 3 });
        expect(box.deliveries).toHaveLength(4);
      });

      it('shares a queue between two consumers without duplicates', async () => {
        const a = await open();
        const b = await open();
        const queue = uniqueName('share');
        await a.declareQueue(queue);
        const acked = new Map<string, string>();
        const duplicates: string[] = [];
        const handler = (who: string) => async (d: Delivery) => {
          await sleep(5);
          if (acked.has(d.id)) duplicates.push(d.id);
          acked.set(d.id, who);
          await d.ack();
        };
        await a.consume(queue, handler('a'), { prefetch: 2 });
        await b.consume(queue, handler('b'), { prefetch: 2 });
        const ids = await a.publish(
          queue,
          Array.from({ length: 30 }, (_, i) => ({ body: `w${i}` })),
        );
        await waitFor(() => acked.size === 30, WAIT_MS * 2, '30 acks');
        expect(duplicates).toEqual([]);
        expect(sorted([...acked.keys()])).toEqual(sorted(ids));
        const byA = [...acked.values()].filter((w) => w === 'a').length;
        expect(byA).toBeGreaterThan(0);
        expect(byA).toBeLessThan(30);
        await statsMatch(a, queue, { ready: 0, inFlight: 0, consumers: 2 });
      });

      it('stops delivering to a cancelled consumer', async () => {
        const broker = await open();
        const queue = uniqueName('cancel');
        await broker.declareQueue(queue);
        const box = await collect(broker, queue, 'ack');
        await broker.publish(queue, [{ body: 'before' }]);
        await waitFor(() => box.deliveries.length === 1, WAIT_MS, 'first delivery');
        await box.consumer.cancel();
        await broker.publish(queue, [{ body: 'after' }]);
        // The broker holds the message ready with no consumer: nobody took it.
        await statsMatch(broker, queue, { ready: 1, inFlight: 0, consumers: 0 });
        expect(box.bodies()).toEqual(['before']);
      });

      it('on close, waits for handler calls in progress, lands their acks and hands back the rest', async () => {
        const a = await open();
        const b = await open();
        const queue = uniqueName('close-drain');
        await a.declareQueue(queue);
        const ids = await a.publish(
          queue,
          Array.from({ length: 4 }, (_, i) => ({ body: `c${i}` })),
        );
        const started: string[] = [];
        const gate = deferred();
        cleanups.push(gate.resolve);
        await a.consume(
          queue,
          async (d) => {
            started.push(d.id);
            await gate.promise;
            await d.ack();
          },
          { prefetch: 2 },
        );
        await waitFor(() => started.length >= 1, WAIT_MS, 'a handler call in progress');
        let closed = false;
        const closing = a.close().then(() => {
          closed = true;
        });
        await sleep(QUIET_MS);
        expect(closed).toBe(false);
        gate.resolve();
        await closing;

        const rest = ids.filter((id) => !started.includes(id));
        expect(rest.length).toBeGreaterThan(0);
        const box = await collect(b, queue, 'ack');
        await waitFor(() => box.deliveries.length === rest.length, WAIT_MS, 'the handed-back rest');
        // Everything acked and nothing left: no further delivery can come.
        await statsMatch(b, queue, { ready: 0, inFlight: 0 });
        expect(sorted(box.ids())).toEqual(sorted(rest));
        expect(box.deliveries.map((d) => d.deliveryCount)).toEqual(rest.map(() => 1));
      });
    });

    describe('topics', () => {
      it('routes topics to the subscriptions whose * and # patterns match, and drops the rest', async (ctx) => {
        const pub = await open();
        ctx.skip(
          !pub.capabilities.topics,
          `${target.name} broker has no topics (capabilities.topics is false)`,
        );
        const sub = await open();
        const p = `t${randomUUID().slice(0, 8)}`;
        const patterns = {
          star: `${p}.a.*`,
          hashEnd: `${p}.a.#`,
          hashMiddle: `${p}.#.z`,
          starMiddle: `${p}.*.z`,
          everything: `${p}.#`,
          hashStart: `#.${p}end`,
        };
        const boxes = Object.fromEntries(
          await Promise.all(
            Object.entries(patterns).map(async ([k, pattern]) => [
              k,
              await subscribeInbox(sub, pattern),
            ]),
          ),
        ) as Record<keyof typeof patterns, Inbox>;
        const topics = [
          `${p}.a`,
          `${p}.a.x`,
          `${p}.a.x.y`,
          `${p}.b.z`,
          `${p}.a.z`,
          `${p}.z`,
          `${p}.b.c.z`,
          `${p}.q`,
          `${p}end`,
          `k.${p}end`,
          `other${p}.a.x`,
        ];
        for (const topic of topics) await pub.publishTopic(topic, [{ body: topic }]);
        // Fences published last: between them they match every pattern, and a subscription
        // delivers in publish order, so once each has its fence it has had everything routed to it.
        const fences = [`${p}.a.z`, `${p}end`];
        for (const topic of fences) await pub.publishTopic(topic, [{ body: `fence ${topic}` }]);
        const isFence = (body: string) => body.startsWith('fence ');
        const expected: Record<keyof typeof patterns, string[]> = {
          star: [`${p}.a.x`, `${p}.a.z`],
          hashEnd: [`${p}.a`, `${p}.a.x`, `${p}.a.x.y`, `${p}.a.z`],
          hashMiddle: [`${p}.b.z`, `${p}.a.z`, `${p}.z`, `${p}.b.c.z`],
          starMiddle: [`${p}.b.z`, `${p}.a.z`],
          everything: topics.slice(0, 8),
          hashStart: [`${p}end`, `k.${p}end`],
        };
        const keys = Object.keys(patterns) as (keyof typeof patterns)[];
        await waitFor(
          () => keys.every((k) => boxes[k].bodies().some(isFence)),
          WAIT_MS,
          'every subscription to receive a fence',
        );
        for (const k of keys) {
          const routed = boxes[k].bodies().filter((body) => !isFence(body));
          expect({ [k]: sorted(routed) }).toEqual({ [k]: sorted(expected[k]) });
        }
      });

      it('stops delivering to a cancelled subscription', async (ctx) => {
        const broker = await open();
        ctx.skip(
          !broker.capabilities.topics,
          `${target.name} broker has no topics (capabilities.topics is false)`,
        );
        const topic = `t${randomUUID().slice(0, 8)}.news`;
        const cancelled = await subscribeInbox(broker, topic);
        const kept = await subscribeInbox(broker, topic);
        await broker.publishTopic(topic, [{ body: 'first' }]);
        await waitFor(
          () => cancelled.deliveries.length === 1 && kept.deliveries.length === 1,
          WAIT_MS,
          'both subscriptions to receive the first message',
        );
        expect(cancelled.deliveries[0]!.id).toBe(kept.deliveries[0]!.id);
        await cancelled.consumer.cancel();
        await broker.publishTopic(topic, [{ body: 'second' }]);
        await waitFor(() => kept.deliveries.length === 2, WAIT_MS, 'the kept subscription');
        await sleep(QUIET_MS);
        expect(cancelled.bodies()).toEqual(['first']);
        expect(kept.bodies()).toEqual(['first', 'second']);
      });
    });

    describe('stats and queues', () => {
      it('counts ready, delayed, in-flight, dead-lettered messages and consumers', async (ctx) => {
        const broker = await open();
        needs(ctx, broker, 'delay');
        needs(ctx, broker, 'deadLetters');
        const queue = uniqueName('stats');
        await broker.declareQueue(queue);
        await broker.publish(queue, [
          { body: 's1' },
          { body: 's2' },
          { body: 's3' },
          { body: 'later', delayMs: 60_000 },
        ]);
        await statsMatch(broker, queue, {
          ready: 3,
          delayed: 1,
          inFlight: 0,
          deadLettered: 0,
          consumers: 0,
        });
        const box = await collect(broker, queue, 'none', { prefetch: 2 });
        await statsMatch(broker, queue, { ready: 1, inFlight: 2, consumers: 1 });
        await waitFor(() => box.deliveries.length === 2, WAIT_MS, 'two deliveries');
        await box.deliveries[0]!.deadLetter('stats test');
        await statsMatch(broker, queue, { ready: 0, inFlight: 2, deadLettered: 1, delayed: 1 });
        await waitFor(() => box.deliveries.length === 3, WAIT_MS, 'the third delivery');
        await box.deliveries[1]!.ack();
        await box.deliveries[2]!.ack();
        await statsMatch(broker, queue, {
          ready: 0,
          inFlight: 0,
          delayed: 1,
          deadLettered: 1,
          consumers: 1,
        });
        await box.consumer.cancel();
        await statsMatch(broker, queue, { consumers: 0 });
        expect((await broker.stats(queue)).queue).toBe(queue);
      });

      it('lists declared queues', async (ctx) => {
        const broker = await open();
        ctx.skip(!broker.capabilities.listQueues, `${target.name} broker cannot list queues`);
        const queues = [uniqueName('list'), uniqueName('list')];
        for (const q of queues) await broker.declareQueue(q);
        const listed = await broker.listQueues();
        for (const q of queues) expect(listed).toContain(q);
        await broker.deleteQueue(queues[0]!);
        const after = await broker.listQueues();
        expect(after).not.toContain(queues[0]);
        expect(after).toContain(queues[1]);
      });

      it('deletes a temporary queue when the handle that declared it closes', async (ctx) => {
        const a = await open();
        const b = await open();
        ctx.skip(!b.capabilities.listQueues, `${target.name} broker cannot list queues`);
        const temporary = uniqueName('temporary');
        const kept = uniqueName('kept');
        await a.declareQueue(temporary, { temporary: true, durable: false });
        await a.declareQueue(kept);
        expect(await b.listQueues()).toContain(temporary);
        await a.close();
        await waitFor(
          async () => !(await b.listQueues()).includes(temporary),
          WAIT_MS,
          'the temporary queue to disappear',
        );
        expect(await b.listQueues()).toContain(kept);
      });
    });

    describe('declaring', () => {
      it('refuses to re-declare a queue with other properties and accepts one that agrees', async () => {
        const a = await open();
        const b = await open();
        const queue = uniqueName('redeclare');
        await a.declareQueue(queue, { leaseMs: 30_000, maxDeliveries: 3 });
        // Options left out match whatever the queue has; equal ones agree.
        await a.declareQueue(queue);
        await a.declareQueue(queue, { leaseMs: 30_000, maxDeliveries: 3 });
        await b.declareQueue(queue);
        const mismatch = { code: ErrorCode.QueueMismatch };
        await expect(a.declareQueue(queue, { leaseMs: 5_000 })).rejects.toMatchObject(mismatch);
        await expect(a.declareQueue(queue, { leaseMs: 5_000 })).rejects.toThrow(
          /leaseMs 30000; declared with 5000/,
        );
        await expect(a.declareQueue(queue, { maxDeliveries: 4 })).rejects.toMatchObject(mismatch);
        // A durable queue cannot be turned into someone's temporary one.
        await expect(a.declareQueue(queue, { temporary: true })).rejects.toMatchObject(mismatch);
        await expect(
          b.declareQueue(queue, { temporary: true, durable: false }),
        ).rejects.toMatchObject(mismatch);
        // The queue is unchanged and still works.
        const [id] = await a.publish(queue, [{ body: 'kept' }]);
        const inbox = await collect(b, queue, 'ack');
        await waitFor(() => inbox.deliveries.length === 1, WAIT_MS, 'the message');
        expect(inbox.ids()).toEqual([id]);
      });
    });

    describe('closing', () => {
      it('rejects publish with a BrokerError after close, emits "closed" and closes idempotently', async () => {
        const broker = await open();
        const queue = uniqueName('closed');
        await broker.declareQueue(queue);
        const statuses: BrokerStatus[] = [];
        broker.on('status', (s) => statuses.push(s));
        await broker.close();
        await expect(broker.close()).resolves.toBeUndefined();
        await expect(broker.publish(queue, [{ body: 'too late' }])).rejects.toBeInstanceOf(
          BrokerError,
        );
        expect(statuses).toContain('closed');
        const other = await open();
        await statsMatch(other, queue, { ready: 0 });
      });
    });

    describe('queue management', () => {
      it('purges ready and delayed messages, lets in-flight ones finish, and says how many', async (ctx) => {
        const broker = await open();
        needs(ctx, broker, 'delay');
        ctx.skip(!broker.capabilities.purge, `${target.name} broker cannot purge queues`);
        const queue = uniqueName('purge');
        await broker.declareQueue(queue);
        await broker.publish(queue, [{ body: 'held' }]);
        const box = await collect(broker, queue, 'none', { prefetch: 1 });
        await waitFor(() => box.deliveries.length === 1, WAIT_MS, 'one delivery held');
        await broker.publish(queue, [
          { body: 'p1' },
          { body: 'p2' },
          { body: 'later', delayMs: 60_000 },
        ]);
        await statsMatch(broker, queue, { ready: 2, delayed: 1, inFlight: 1 });
        expect(await broker.purgeQueue(queue)).toBe(3);
        await statsMatch(broker, queue, { ready: 0, delayed: 0, inFlight: 1, deadLettered: 0 });
        await box.deliveries[0]!.ack();
        await statsMatch(broker, queue, { ready: 0, delayed: 0, inFlight: 0 });
        await broker.publish(queue, [{ body: 'after' }]);
        await waitFor(() => box.deliveries.length === 2, WAIT_MS, 'a delivery after the purge');
        expect(box.bodies()).toEqual(['held', 'after']);
        expect(await broker.purgeQueue(queue)).toBe(0);
      });

      it('refuses to purge, pause or resume a queue that does not exist, naming it', async (ctx) => {
        const broker = await open();
        const missing = uniqueName('missing');
        if (broker.capabilities.purge) {
          await expect(broker.purgeQueue(missing)).rejects.toThrow(NotFoundError);
          await expect(broker.purgeQueue(missing)).rejects.toThrow(missing);
        }
        ctx.skip(!broker.capabilities.pause, `${target.name} broker cannot pause queues`);
        await expect(broker.pauseQueue(missing)).rejects.toThrow(NotFoundError);
        await expect(broker.resumeQueue(missing)).rejects.toThrow(NotFoundError);
      });

      it('rejects purge and pause with a BrokerError where the capability is missing', async (ctx) => {
        const broker = await open();
        const { purge, pause } = broker.capabilities;
        ctx.skip(purge && pause, `${target.name} broker can purge and pause`);
        const queue = uniqueName('unsupported');
        await broker.declareQueue(queue);
        if (!purge) await expect(broker.purgeQueue(queue)).rejects.toBeInstanceOf(BrokerError);
        if (!pause) {
          await expect(broker.pauseQueue(queue)).rejects.toBeInstanceOf(BrokerError);
          await expect(broker.resumeQueue(queue)).rejects.toBeInstanceOf(BrokerError);
          expect((await broker.stats(queue)).paused).toBe(false);
        }
      });

      it('delivers nothing from a paused queue to any handle until resumed, still taking publishes', async (ctx) => {
        const a = await open();
        const b = await open();
        ctx.skip(!a.capabilities.pause, `${target.name} broker cannot pause queues`);
        const queue = uniqueName('pause');
        await a.declareQueue(queue);
        await a.publish(queue, [{ body: 'before' }]);
        const box = await collect(a, queue, 'none', { prefetch: 10 });
        await waitFor(() => box.deliveries.length === 1, WAIT_MS, 'the delivery before the pause');
        await b.pauseQueue(queue);
        await b.pauseQueue(queue); // idempotent
        await statsMatch(a, queue, { paused: true, inFlight: 1 });
        expect(await b.publish(queue, [{ body: 'p1' }, { body: 'p2' }])).toHaveLength(2);
        // The broker holds both ready while the consumer with free slots is attached.
        await statsMatch(b, queue, { ready: 2, inFlight: 1, paused: true });
        expect(box.bodies()).toEqual(['before']);
        // The delivery in flight still settles while paused.
        await box.deliveries[0]!.ack();
        await statsMatch(a, queue, { ready: 2, inFlight: 0 });
        const late = await collect(b, queue, 'none');
        await statsMatch(a, queue, { ready: 2, inFlight: 0, paused: true });
        expect(late.deliveries).toHaveLength(0);
        await b.resumeQueue(queue);
        await statsMatch(a, queue, { paused: false });
        await waitFor(
          () => box.deliveries.length + late.deliveries.length === 3,
          WAIT_MS,
          'both messages after resume',
        );
        expect(sorted([...box.bodies(), ...late.bodies()])).toEqual(['before', 'p1', 'p2']);
      });
    });

    describe('several processes', () => {
      it(
        'never lets consumers in separate processes hold the same live lease, and acks each message once',
        { timeout: 60_000 },
        async (ctx) => {
          const broker = await open();
          ctx.skip(
            !broker.capabilities.multiProcess,
            `${target.name} broker is single-process (capabilities.multiProcess is false)`,
          );
          ctx.skip(target.url === undefined, `no url given for the ${target.name} target`);
          await multiProcessRun(broker, target.url!, cleanups);
        },
      );
    });
  });
}

interface ChildEvent {
  event: 'ready' | 'ack' | 'nack';
  pid: number;
  id?: string;
  deliveryCount?: number;
  start?: number;
  end?: number;
}

interface Child {
  process: ChildProcess;
  stderr: string;
  exit: Promise<number | null>;
}

async function multiProcessRun(
  broker: Broker,
  url: string,
  cleanups: (() => void)[],
): Promise<void> {
  const queue = uniqueName('processes');
  // Long enough that no lease expires in this test: overlaps would then be real double claims.
  await broker.declareQueue(queue, { leaseMs: 20_000 });
  const events: ChildEvent[] = [];
  const children: Child[] = [];
  cleanups.push(() => {
    for (const c of children) if (c.process.exitCode === null) c.process.kill('SIGKILL');
  });
  for (let i = 0; i < 3; i++) {
    const proc = spawn(process.execPath, [FIXTURE, url, queue, '3', '2'], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const child: Child = {
      process: proc,
      stderr: '',
      exit: new Promise((resolve) => proc.on('exit', (code) => resolve(code))),
    };
    onJsonLines(proc.stdout!, (value) => events.push(value as ChildEvent));
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (child.stderr += chunk));
    children.push(child);
  }
  const failedChild = () =>
    children.find((c) => c.process.exitCode !== null && c.process.exitCode !== 0);
  const waitChildren = async (cond: () => boolean, what: string) => {
    await waitFor(
      () => {
        const failed = failedChild();
        if (failed) {
          throw new Error(
            `conformance consumer exited with ${failed.process.exitCode}: ${failed.stderr.trim()}`,
          );
        }
        return cond();
      },
      30_000,
      what,
    );
  };
  await waitChildren(
    () => events.filter((e) => e.event === 'ready').length === children.length,
    'every child process to start consuming',
  );

  const total = 45;
  const ids = await broker.publish(
    queue,
    Array.from({ length: total }, (_, i) => ({
      body: `job ${i}`,
      headers: { nackFirst: i % 3 === 0 },
    })),
  );
  const acks = () => events.filter((e) => e.event === 'ack');
  await waitChildren(() => acks().length >= total, `${total} acks from the child processes`);
  for (const c of children) c.process.stdin!.end();
  const codes = await Promise.all(children.map((c) => c.exit));
  expect(codes, children.map((c) => c.stderr).join('\n')).toEqual(children.map(() => 0));

  const acked = acks().map((e) => e.id!);
  expect(acked).toHaveLength(total);
  expect(sorted(acked)).toEqual(sorted(ids));

  const byId = new Map<string, ChildEvent[]>();
  for (const e of events) {
    if (e.event === 'ready') continue;
    const list = byId.get(e.id!) ?? [];
    list.push(e);
    byId.set(e.id!, list);
  }
  for (const [id, list] of byId) {
    list.sort((x, y) => x.start! - y.start!);
    for (let i = 1; i < list.length; i++) {
      const prev = list[i - 1]!;
      const next = list[i]!;
      // A new lease on a message may only begin after the previous holder settled it.
      expect(next.start!, `message ${id}: deliveries overlap`).toBeGreaterThanOrEqual(prev.end!);
      expect(next.deliveryCount!, `message ${id}: delivery counts`).toBeGreaterThan(
        prev.deliveryCount!,
      );
    }
  }
  const nacked = events.filter((e) => e.event === 'nack').length;
  expect(nacked).toBe(total / 3);
  const workers = new Set(acks().map((e) => e.pid));
  expect(workers.size).toBeGreaterThan(1);
  await statsMatch(broker, queue, { ready: 0, inFlight: 0, delayed: 0 });
}
