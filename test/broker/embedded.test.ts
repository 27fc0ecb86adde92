import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { brokerConformanceSuite } from './conformance/suite.js';
import { EmbeddedBroker } from '../../src/broker/embedded/index.js';

// One database file for the suite; every test uses its own queue names. Child processes of the
// multi-process test open the same file through `openBroker(path)`.
const dir = mkdtempSync(join(tmpdir(), 'qtune-conformance-'));
const path = join(dir, 'broker.db');

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

brokerConformanceSuite({
  name: 'embedded',
  open: () => EmbeddedBroker.open({ path }),
  url: path,
});
