import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedBroker } from '../../src/broker/embedded/index.js';
import { itemsFromArray, submitJob, type SubmitItem } from '../../src/job/submit.js';
import { InputError } from '../../src/protocol/errors.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';

let dir: string;
const opened: { close(): Promise<void> }[] = [];

afterEach(async () => {
  for (const o of opened.splice(0)) await o.close();
  rmSync(dir, { recursive: true, force: true });
});

async function open(): Promise<{ broker: EmbeddedBroker; store: SqliteStore }> {
  dir = mkdtempSync(join(tmpdir(), 'qtune-submit-'));
  const broker = await EmbeddedBroker.open({ path: join(dir, 'broker.db') });
  const store = new SqliteStore({ path: join(dir, 'store.db') });
  opened.push(broker, store);
  return { broker, store };
}

/** A source of `n` items (item `bad` without a name) that counts how often it is read. */
function countingSource(n: number, bad?: number) {
  const stats = { passes: 0 };
  const source = async function* (): AsyncGenerator<SubmitItem> {
    stats.passes++;
    for (let i = 0; i < n; i++) {
      const item = i === bad ? { other: i } : { name: `company ${i}` };
      yield { item, where: `"items.jsonl" line ${i + 1}` };
    }
  };
  return { source, stats };
}

describe('submitJob', () => {
  it('reads the items twice, stores and publishes each once, and adds nothing on a resubmit', async () => {
    const { broker, store } = await open();
    const { source, stats } = countingSource(12_345);
    const r = await submitJob({ broker, store, name: 'big', items: source, keyFields: ['name'] });
    expect(stats.passes).toBe(2);
    expect(r).toMatchObject({ items: 12_345, added: 12_345, published: 12_345 });
    expect((await store.jobs.jobItemCounts('big')).total).toBe(12_345);
    expect((await broker.stats('big')).ready).toBe(12_345);

    const again = await submitJob({
      broker,
      store,
      name: 'big',
      items: source,
      keyFields: ['name'],
    });
    expect(again).toMatchObject({ items: 12_345, added: 0, published: 0 });
    expect((await broker.stats('big')).ready).toBe(12_345);
  });

  it('rejects the input whole when its last item lacks a key field: nothing stored or published', async () => {
    const { broker, store } = await open();
    const { source, stats } = countingSource(7_000, 6_999);
    const submitted = submitJob({ broker, store, name: 'bad', items: source, keyFields: ['name'] });
    await expect(submitted).rejects.toThrow(InputError);
    await expect(submitted).rejects.toThrow(/"items\.jsonl" line 7000: .*key field "name"/);
    expect(stats.passes).toBe(1);
    expect(await store.jobs.getJob('bad')).toBeUndefined();
    expect(await broker.listQueues()).not.toContain('bad');
  });

  it('publishes nothing when the input changes between the two passes', async () => {
    const { broker, store } = await open();
    let pass = 0;
    const items = async function* (): AsyncGenerator<SubmitItem> {
      const n = ++pass === 1 ? 10 : 8;
      for (let i = 0; i < n; i++) yield { item: { i }, where: `item ${i + 1}` };
    };
    await expect(submitJob({ broker, store, name: 'moving', items })).rejects.toThrow(
      /input changed while it was submitted: 10 item\(s\) checked, 8 stored/,
    );
    expect((await store.jobs.jobItemCounts('moving')).queued).toBe(0);
  });

  it('takes items already in memory', async () => {
    const { broker, store } = await open();
    const r = await submitJob({
      broker,
      store,
      name: 'small',
      items: itemsFromArray([{ a: 1 }, { a: 2 }, { a: 1 }]),
    });
    expect(r).toMatchObject({ items: 3, added: 2, published: 2 });
    await expect(
      submitJob({
        broker,
        store,
        name: 'small',
        items: itemsFromArray([{ a: 3 }, { b: 1 }]),
        keyFields: ['a'],
      }),
    ).rejects.toThrow(/^item 2: /);
  });
});
