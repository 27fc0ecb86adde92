import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { InputError } from '../../../src/protocol/errors.js';
import { loadModuleHandler } from '../../../src/worker/handlers/module.js';
import { fakeContext } from '../helpers.js';

const fixture = (name: string): string =>
  fileURLToPath(new URL(`../../fixtures/worker/${name}`, import.meta.url));

describe('loadModuleHandler', () => {
  it("runs the module's default export with the payload and the context", async () => {
    const handler = await loadModuleHandler(fixture('double.mjs'));
    await expect(handler({ n: 21 }, fakeContext({ taskId: 't-9', attempt: 2 }))).resolves.toEqual({
      doubled: 42,
      taskId: 't-9',
      attempt: 2,
    });
  });

  it('returns a promise for a function that returns or throws at once', async () => {
    const sync = await loadModuleHandler(fixture('sync.mjs'));
    const out = sync('x', fakeContext());
    expect(out).toBeInstanceOf(Promise);
    await expect(out).resolves.toEqual({ sync: 'x' });
    const throws = await loadModuleHandler(fixture('throws-sync.mjs'));
    const failed = throws(null, fakeContext());
    expect(failed).toBeInstanceOf(Promise);
    await expect(failed).rejects.toThrow('sync boom');
  });

  it('accepts a CommonJS module whose module.exports is the function', async () => {
    const handler = await loadModuleHandler(fixture('commonjs.cjs'));
    await expect(handler('x', fakeContext())).resolves.toEqual({ echoed: 'x' });
  });

  it('names the module and its exports when there is no default export', async () => {
    const error = await loadModuleHandler(fixture('no-default.mjs')).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InputError);
    expect((error as Error).message).toMatch(
      /no-default\.mjs.*no default export \(exports: handler\)/,
    );
  });

  it('rejects a default export that is not a function', async () => {
    await expect(loadModuleHandler(fixture('default-object.mjs'))).rejects.toThrow(
      /default export of type object/,
    );
  });

  it('says it cannot load a missing module', async () => {
    await expect(loadModuleHandler(fixture('missing.mjs'))).rejects.toThrow(
      /handler module ".*missing\.mjs": cannot load it/,
    );
  });
});
