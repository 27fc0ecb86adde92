import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { EmbeddedBroker } from '../../src/broker/embedded/index.js';
import { SCHEMA_VERSION } from '../../src/broker/embedded/schema.js';
import { openBroker } from '../../src/broker/open.js';
import { NotFoundError } from '../../src/protocol/errors.js';

const dirs: string[] = [];

afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'qtune-embedded-open-'));
  dirs.push(dir);
  return dir;
}

describe('EmbeddedBroker.open', () => {
  it('refuses a missing file with create: false, naming it and creating nothing', async () => {
    const dir = tempDir();
    const inMissingDir = join(dir, 'nonexistent', 'broker.db');
    const err = await EmbeddedBroker.open({ path: inMissingDir, create: false }).catch((e) => e);
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe(`broker file "${inMissingDir}" does not exist`);
    expect(existsSync(join(dir, 'nonexistent'))).toBe(false);

    const missing = join(dir, 'broker.db');
    await expect(EmbeddedBroker.open({ path: missing, create: false })).rejects.toThrow(
      NotFoundError,
    );
    await expect(openBroker(missing, { create: false })).rejects.toThrow(NotFoundError);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('opens an existing file with create: false', async () => {
    const path = join(tempDir(), 'broker.db');
    const first = await EmbeddedBroker.open({ path });
    await first.publish('q', [{ body: 'kept' }]);
    await first.close();
    const again = await openBroker(path, { create: false });
    try {
      expect(await again.stats('q')).toMatchObject({ ready: 1, paused: false });
    } finally {
      await again.close();
    }
  });

  it('opens a file of layout 2 and keeps its messages, queues unpaused', async () => {
    const path = join(tempDir(), 'broker.db');
    const first = await EmbeddedBroker.open({ path });
    await first.publish('q', [{ body: 'old' }]);
    await first.close();
    // Take the file back to layout 2: no pause flag, no handle numbers.
    const db = new Database(path);
    db.exec(`ALTER TABLE queues DROP COLUMN paused; ALTER TABLE handles DROP COLUMN num;
      ALTER TABLE handles DROP COLUMN pid_ns; DROP TABLE counters;`);
    db.pragma('user_version = 2');
    db.close();

    const b = await EmbeddedBroker.open({ path });
    try {
      expect(await b.stats('q')).toMatchObject({ ready: 1, paused: false });
      await b.pauseQueue('q');
      expect((await b.stats('q')).paused).toBe(true);
    } finally {
      await b.close();
    }
    const check = new Database(path, { readonly: true });
    expect(check.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    check.close();
  });
});
