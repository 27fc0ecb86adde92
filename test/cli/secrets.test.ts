import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openBroker } from '../../src/broker/open.js';
import type * as LocalWorkersModule from '../../src/cli/local-workers.js';
import { assertBuilt, ROOT, runCli, tempBroker } from './helpers.js';

type LocalWorkersModule = typeof LocalWorkersModule;

describe('secrets', () => {
  const cleanups: (() => void | Promise<void>)[] = [];
  beforeAll(assertBuilt);
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('never prints a password in a CLI error, even from a URL that does not parse', async () => {
    for (const url of [
      'amqp://qtune:pa/ss-S3CRET@127.0.0.1:1/',
      'amqp://qtune:p@ss-S3CRET@127.0.0.1:1/',
      'amqp://127.0.0.1:1/?management=http://admin:S3CRET@127.0.0.1:2',
      'http://alice:S3CRET@127.0.0.1:1',
      'bogus://alice:S3CRET@host',
    ]) {
      const res = await runCli(['status', '--broker', url], { env: { QTUNE_BROKER: '' } });
      expect(res.code, `${url}: ${res.stderr}`).not.toBe(0);
      expect(res.stderr).toMatch(/^qtune: /);
      expect(res.stderr, url).not.toContain('S3CRET');
    }
  });

  it('gives local workers the broker URL in their environment, not on their command line', async () => {
    const tb = tempBroker();
    cleanups.push(tb.cleanup);
    // The secret stands in for a password: the broker file's folder holds it.
    const dir = join(tb.dir, 'pw-S3CRET');
    mkdirSync(dir);
    const url = join(dir, 'broker.db');
    // The built module: its workers run the built CLI next to it.
    const localWorkers: LocalWorkersModule = await import(join(ROOT, 'dist/cli/local-workers.js'));
    const { spawnLocalWorkers, waitForConsumers, builtinHandler } = localWorkers;
    const broker = await openBroker(url);
    cleanups.push(() => broker.close());
    await broker.declareQueue('secrets');
    const workers = spawnLocalWorkers({
      brokerUrl: url,
      queue: 'secrets',
      module: builtinHandler('noop-handler'),
      count: 1,
      concurrency: 1,
    });
    cleanups.push(() => workers.stop());
    // It reached the broker named only in its environment...
    await waitForConsumers(broker, 'secrets', 1);
    const pid = workers.children[0]!.pid!;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    expect(cmdline).toContain('worker');
    expect(cmdline).not.toContain('S3CRET');
    // ...and the environment, readable only by its owner, holds it.
    expect(readFileSync(`/proc/${pid}/environ`, 'utf8')).toContain(`QTUNE_BROKER=${url}`);
  });
});
