import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const ADAPTER_PACKAGES = ['fastify', 'better-sqlite3', 'amqplib', 'pg'];

interface ExportTarget {
  types: string;
  default: string;
}
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  exports: Record<string, ExportTarget>;
};

interface Probe {
  /** Export names of each module imported, by specifier. */
  names: Record<string, string[]>;
  /** Packages in the CommonJS module cache after each step. */
  loaded: Record<string, string[]>;
}

/**
 * Runs `steps` (ES module code, in order) in a fresh node process in the package folder, so
 * that `import('qtune/...')` goes through package.json "exports"; after each step, records the
 * packages under node_modules that are loaded (fastify, better-sqlite3, amqplib and pg are
 * CommonJS, so each file of theirs lands in the require cache, also when imported from ESM).
 */
async function probe(steps: Record<string, string>): Promise<Probe> {
  const code = `
    import { createRequire } from 'node:module';
    const require = createRequire(process.cwd() + '/');
    const out = { names: {}, loaded: {} };
    const record = (step) => {
      const packages = new Set();
      for (const file of Object.keys(require.cache)) {
        const m = /node_modules[\\\\/]((?:@[^\\\\/]+[\\\\/])?[^\\\\/]+)/.exec(file);
        if (m) packages.add(m[1].replace('\\\\', '/'));
      }
      out.loaded[step] = [...packages].sort();
    };
    const load = async (specifier) => {
      const mod = await import(specifier);
      out.names[specifier] = Object.keys(mod).sort();
      return mod;
    };
    ${Object.entries(steps)
      .map(([name, body]) => `{ ${body} }\nrecord(${JSON.stringify(name)});`)
      .join('\n')}
    process.stdout.write(JSON.stringify(out));
  `;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--input-type=module', '-e', code],
    { cwd: ROOT },
  );
  return JSON.parse(stdout) as Probe;
}

beforeAll(() => {
  for (const target of Object.values(pkg.exports)) {
    if (!existsSync(join(ROOT, target.default)))
      throw new Error(`${target.default} is missing: run "npm run build" first (npm test does)`);
  }
});

describe('package entry points', () => {
  it('import "qtune" loads no adapter, and openBroker loads only the one its URL names', async () => {
    const r = await probe({
      root: `globalThis.root = await load('qtune');`,
      memory: `
        const broker = await globalThis.root.openBroker('memory://entry-test');
        if (broker.kind !== 'memory') throw new Error('got ' + broker.kind);
        await broker.close();
      `,
    });
    for (const name of ADAPTER_PACKAGES) {
      expect(r.loaded.root).not.toContain(name);
      expect(r.loaded.memory).not.toContain(name);
    }
    expect(r.names.qtune).toEqual(
      expect.arrayContaining([
        'openBroker',
        'openStore',
        'parseBrokerUrl',
        'parseStoreUrl',
        'QUEUE_DEFAULTS',
        'declareQueueOrKeep',
        'replyChannelsOf',
        'envelopeMessage',
        'Requester',
        'serveRequests',
        'submitTasks',
        'consumeResults',
        'publishEvent',
        'startWorker',
        'Worker',
        'Scheduler',
        'TpeSampler',
        'MedianPruner',
        'createEnvelope',
        'QtuneError',
        'ErrorCode',
      ]),
    );
    for (const adapter of [
      'MemoryBroker',
      'EmbeddedBroker',
      'AmqpBroker',
      'GatewayBroker',
      'SqliteStore',
      'createGateway',
    ]) {
      expect(r.names.qtune).not.toContain(adapter);
    }
  });

  it('the sub-paths still export the adapters, which load their packages', async () => {
    const r = await probe({
      broker: `await load('qtune/broker');`,
      store: `await load('qtune/store');`,
      gateway: `await load('qtune/gateway');`,
    });
    expect(r.names['qtune/broker']).toEqual(
      expect.arrayContaining([
        'openBroker',
        'MemoryBroker',
        'EmbeddedBroker',
        'AmqpBroker',
        'GatewayBroker',
      ]),
    );
    expect(r.names['qtune/store']).toEqual(expect.arrayContaining(['openStore', 'SqliteStore']));
    expect(r.names['qtune/gateway']).toEqual(expect.arrayContaining(['createGateway']));
    // The check above is only worth something if it sees an adapter once one is loaded.
    expect(r.loaded.broker).toEqual(expect.arrayContaining(['amqplib', 'better-sqlite3']));
    expect(r.loaded.gateway).toContain('fastify');
  });

  it('every sub-path in package.json "exports" resolves to a module and its types', async () => {
    const subPaths = Object.keys(pkg.exports);
    expect(subPaths).toContain('.');
    const specifiers = subPaths.map((p) => (p === '.' ? pkg.name : `${pkg.name}/${p.slice(2)}`));
    const r = await probe(
      Object.fromEntries(specifiers.map((s) => [s, `await load(${JSON.stringify(s)});`])),
    );
    for (const [i, specifier] of specifiers.entries()) {
      expect(r.names[specifier]?.length ?? 0, specifier).toBeGreaterThan(0);
      expect(existsSync(join(ROOT, pkg.exports[subPaths[i]!]!.types)), specifier).toBe(true);
    }
  });
});
