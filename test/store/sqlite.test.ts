import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll } from 'vitest';
import { storeConformance } from '../../src/store/conformance/suite.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';

// One database file for the suite (every test uses its own names); each handle is a separate
// connection to it, as another process would open it.
let dir = '';

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'qtune-store-'));
});

storeConformance(
  'sqlite',
  async () => new SqliteStore({ path: join(dir, 'store.db') }),
  () => rmSync(dir, { recursive: true, force: true }),
);
