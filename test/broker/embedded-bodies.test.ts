import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Broker, Delivery } from '../../src/broker/contract.js';
import { EmbeddedBroker } from '../../src/broker/embedded/index.js';
import { INLINE_BODY_BYTES, SCHEMA_VERSION } from '../../src/broker/embedded/schema.js';
import { waitFor } from '../support/wait.js';

// Bodies longer than INLINE_BODY_BYTES live in their own table. These tests check, on a real
// SQLite file, that such bodies come back byte for byte on every path a message takes, and that
// no stored body outlives its message.

let dir: string;
let path: string;
const open: Broker[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'qtune-bodies-'));
  path = join(dir, 'broker.db');
});

afterEach(async () => {
  for (const b of open.splice(0)) await b.close();
  rmSync(dir, { recursive: true, force: true });
});

async function broker(): Promise<EmbeddedBroker> {
  const b = await EmbeddedBroker.open({ path });
  open.push(b);
  return b;
}

/** Rows in the bodies table, read through a connection of the test's own. */
function storedBodies(): number {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM bodies').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

async function take(b: Broker, queue: string, n: number): Promise<Delivery[]> {
  const got: Delivery[] = [];
  const consumer = await b.consume(queue, async (d) => void got.push(d), { prefetch: n });
  await waitFor(() => got.length >= n, 10_000, `${n} deliveries of "${queue}"`);
  await consumer.cancel();
  return got;
}

const sizes = [0, 1, INLINE_BODY_BYTES, INLINE_BODY_BYTES + 1, 5_000, 300_000];

describe('embedded broker: message bodies stored apart', () => {
  it('delivers bodies of every size byte for byte, and acking drops the stored ones', async () => {
    const b = await broker();
    await b.declareQueue('sizes');
    const bodies = sizes.map((n) => randomBytes(n));
    await b.publish(
      'sizes',
      bodies.map((body, i) => ({ id: `m${i}`, body })),
    );
    expect(storedBodies()).toBe(sizes.filter((n) => n > INLINE_BODY_BYTES).length);
    const got = await take(b, 'sizes', bodies.length);
    for (const d of got) expect(d.body.equals(bodies[Number(d.id.slice(1))]!)).toBe(true);
    for (const d of got) await d.ack();
    expect(storedBodies()).toBe(0);
  });

  it('fills a prefetch larger than one lease in steps, each body intact and in order', async () => {
    const b = await broker();
    await b.declareQueue('wide');
    // More than one lease takes (5,000), with bodies stored apart.
    const n = 12_000;
    const bodies = Array.from({ length: n }, (_, i) =>
      Buffer.from(`${i}:`.padEnd(INLINE_BODY_BYTES + 40, 'x')),
    );
    for (let i = 0; i < n; i += 4000)
      await b.publish(
        'wide',
        bodies.slice(i, i + 4000).map((body, j) => ({ id: `m${i + j}`, body })),
      );
    const got = await take(b, 'wide', n);
    expect(got.map((d) => d.id)).toEqual(bodies.map((_, i) => `m${i}`));
    for (const d of got) expect(d.body.equals(bodies[Number(d.id.slice(1))]!)).toBe(true);
    await Promise.all(got.map((d) => d.ack()));
    expect(storedBodies()).toBe(0);
  });

  it('keeps a long body through a retry, a lost lease and dead-lettering', async () => {
    const b = await broker();
    await b.declareQueue('retry', { maxDeliveries: 3, leaseMs: 200 });
    const body = randomBytes(10_000);
    await b.publish('retry', [{ id: 'long', body }]);
    // Delivery 1: nacked for a retry; delivery 2: its lease runs out; delivery 3: dead-lettered.
    const [first] = await take(b, 'retry', 1);
    expect(first!.body.equals(body)).toBe(true);
    await first!.nack({ error: 'try again' });
    const [second] = await take(b, 'retry', 1);
    expect(second!.body.equals(body)).toBe(true);
    expect(second!.deliveryCount).toBe(2);
    const [third] = await take(b, 'retry', 1); // after the lease of the second ran out
    expect(third!.body.equals(body)).toBe(true);
    expect(third!.deliveryCount).toBe(3);
    await third!.deadLetter('gave up');
    expect(storedBodies()).toBe(1);
    const [dead] = await take(b, 'retry.dead', 1);
    expect(dead!.body.equals(body)).toBe(true);
    expect(dead!.headers['x-qtune-dead-reason']).toBe('gave up');
    await dead!.ack();
    expect(storedBodies()).toBe(0);
  });

  it('drops the stored bodies of a deleted queue, ready and leased alike', async () => {
    const b = await broker();
    await b.declareQueue('gone');
    await b.publish(
      'gone',
      Array.from({ length: 20 }, (_, i) => ({ id: `g${i}`, body: randomBytes(1_000) })),
    );
    await take(b, 'gone', 5); // five leased, fifteen ready
    expect(storedBodies()).toBe(20);
    await b.deleteQueue('gone');
    expect(storedBodies()).toBe(0);
  });

  it('opens a file of the previous layout (bodies in the rows) and delivers its messages', async () => {
    // A version-1 file as an earlier qtune wrote it: body NOT NULL in the messages table.
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    db.exec(`
      CREATE TABLE queues (name TEXT PRIMARY KEY, max_deliveries INTEGER NOT NULL,
        dead_letter_queue TEXT NOT NULL, priorities INTEGER NOT NULL, lease_ms INTEGER NOT NULL,
        message_ttl_ms INTEGER, durable INTEGER NOT NULL, owner TEXT, created_at INTEGER NOT NULL);
      CREATE TABLE messages (seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, id TEXT NOT NULL,
        priority INTEGER NOT NULL, state INTEGER NOT NULL, due_at INTEGER, lease_token INTEGER,
        deliveries INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, expires_at INTEGER,
        last_error TEXT, headers TEXT, body BLOB NOT NULL);
      CREATE INDEX messages_ready ON messages(queue, priority DESC, seq) WHERE state = 0;
    `);
    const now = Date.now();
    db.prepare(`INSERT INTO queues VALUES ('old', 5, 'old.dead', 1, 30000, NULL, 1, NULL, ?)`).run(
      now,
    );
    const long = randomBytes(2_000);
    const insert = db.prepare(
      `INSERT INTO messages (queue, id, priority, state, created_at, body) VALUES ('old', ?, 0, 0, ?, ?)`,
    );
    insert.run('short', now, Buffer.from('{"n":1}'));
    insert.run('long', now, long);
    db.pragma('user_version = 1');
    db.close();

    const b = await broker();
    const got = await take(b, 'old', 2);
    const byId = new Map(got.map((d) => [d.id, d]));
    expect(byId.get('short')!.body.toString()).toBe('{"n":1}');
    expect(byId.get('long')!.body.equals(long)).toBe(true);
    for (const d of got) await d.ack();
    // New long messages go to the bodies table of the migrated file.
    await b.publish('old', [{ id: 'new', body: randomBytes(1_000) }]);
    expect(storedBodies()).toBe(1);
    const check = new Database(path, { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    check.close();
  });
});
