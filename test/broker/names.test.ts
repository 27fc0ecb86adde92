import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { Broker } from '../../src/broker/contract.js';
import { EmbeddedBroker } from '../../src/broker/embedded/index.js';
import { MemoryBroker, MemoryBus } from '../../src/broker/memory/index.js';
import { ErrorCode, InputError } from '../../src/protocol/index.js';

const dir = mkdtempSync(join(tmpdir(), 'qtune-names-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const BAD = ['q\u001b[31mred', 'nul\u0000', 'amq.mine', 'x'.repeat(239), 'a.*', ''];

for (const [name, open] of [
  ['memory', async () => new MemoryBroker(new MemoryBus())],
  ['embedded', () => EmbeddedBroker.open({ path: join(dir, `${Date.now()}.db`) })],
] as const) {
  describe(`${name} broker names`, () => {
    it('refuses a queue name qtune cannot use everywhere, at declare and at publish', async () => {
      const broker: Broker = await open();
      try {
        for (const bad of BAD) {
          const declare = broker.declareQueue(bad);
          await expect(declare).rejects.toBeInstanceOf(InputError);
          await expect(declare).rejects.toMatchObject({ code: ErrorCode.BadInput });
          await expect(broker.publish(bad, [{ body: '{}' }])).rejects.toBeInstanceOf(InputError);
        }
        await expect(
          broker.declareQueue('ok', { deadLetterQueue: 'dead\u001b' }),
        ).rejects.toBeInstanceOf(InputError);
        // The longest name a user may give, and what qtune derives from it, are taken.
        await broker.declareQueue('x'.repeat(200));
        await broker.declareQueue(`${'x'.repeat(200)}.results`);
        await broker.declareQueue('x'.repeat(238));
      } finally {
        await broker.close();
      }
    });
  });
}
