import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { EmbeddedBroker as Embedded } from '../../src/broker/embedded/index.js';
import { assertBuilt, ROOT } from '../cli/helpers.js';
import { sleep, waitFor } from '../support/wait.js';

// The checkpoint thread runs from the build (dist/), as in every qtune process.
let EmbeddedBroker: typeof Embedded;
beforeAll(async () => {
  assertBuilt();
  ({ EmbeddedBroker } = (await import(join(ROOT, 'dist/broker/embedded/index.js'))) as {
    EmbeddedBroker: typeof Embedded;
  });
});

let dir: string;
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const size = (path: string) => statSync(path).size;

/** Publishes ~2 MB: well under the 4000-page autocheckpoint, so only a checkpointer moves it. */
async function publishSome(broker: Embedded): Promise<void> {
  await broker.declareQueue('q');
  const body = Buffer.alloc(1024, 'x');
  for (let i = 0; i < 2; i++)
    await broker.publish(
      'q',
      Array.from({ length: 1000 }, () => ({ body })),
    );
}

describe('embedded broker checkpoints', () => {
  it('copies committed pages into the database file from a background thread while the handle is open', async () => {
    dir = mkdtempSync(join(tmpdir(), 'qtune-ckpt-'));
    const path = join(dir, 'broker.db');
    const broker = await EmbeddedBroker.open({ path });
    try {
      const before = size(path);
      await publishSome(broker);
      await waitFor(() => size(path) > before + 1_500_000, 5_000, 'the pages in the database file');
      // And the handle still works: every message is there.
      expect((await broker.stats('q')).ready).toBe(2000);
    } finally {
      await broker.close();
    }
  });

  it('without the thread, the pages stay in the WAL until a commit checkpoints', async () => {
    dir = mkdtempSync(join(tmpdir(), 'qtune-ckpt-'));
    const path = join(dir, 'broker.db');
    const broker = await EmbeddedBroker.open({ path, checkpointThread: false });
    try {
      const before = size(path);
      await publishSome(broker);
      // The file only grows, so one look after the window covers all of it.
      await sleep(500);
      expect(size(path)).toBeLessThanOrEqual(before + 1_500_000);
      expect(size(`${path}-wal`)).toBeGreaterThan(1_500_000);
    } finally {
      await broker.close();
    }
  });

  it('a closed handle leaves no WAL behind and reopens with every message', async () => {
    dir = mkdtempSync(join(tmpdir(), 'qtune-ckpt-'));
    const path = join(dir, 'broker.db');
    const broker = await EmbeddedBroker.open({ path });
    await publishSome(broker);
    await broker.close();
    expect(() => statSync(`${path}-wal`)).toThrow();
    const again = await EmbeddedBroker.open({ path });
    try {
      expect((await again.stats('q')).ready).toBe(2000);
    } finally {
      await again.close();
    }
  });
});
