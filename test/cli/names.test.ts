import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedBroker } from '../../src/broker/embedded/index.js';
import { DEAD_LETTER_REASON_HEADER } from '../../src/broker/contract.js';
import { assertBuilt, runCli, tempBroker } from './helpers.js';

const ESC = '\u001b';

describe('names on the command line', () => {
  let env: ReturnType<typeof tempBroker> | undefined;
  beforeAll(assertBuilt);
  afterEach(() => env?.cleanup());

  it('refuses a queue argument with an escape sequence, and prints it escaped', async () => {
    env = tempBroker();
    const queue = `jobs${ESC}[2J${ESC}]0;pwned\u0007`;
    for (const args of [
      ['publish', queue],
      ['worker', queue, '--module', 'x.mjs'],
      ['results', queue],
      ['dlq', queue],
    ]) {
      const res = await runCli([...args, '--broker', env.url], { input: '{"a":1}\n' });
      expect(res.code, `${args[0]}: ${res.stderr}`).toBe(2);
      expect(res.stderr).toContain('queue name "jobs\\x1b[2J\\x1b]0;pwned\\x07"');
      expect(res.stderr).not.toContain(ESC);
    }
  });

  it('escapes the ids, reasons and bodies of dead letters that dlq prints', async () => {
    env = tempBroker();
    const broker = await EmbeddedBroker.open({ path: env.url });
    await broker.declareQueue('tasks');
    await broker.publish('tasks.dead', [
      {
        body: `raw ${ESC}[2J body`,
        headers: { [DEAD_LETTER_REASON_HEADER]: `HANDLER_ERROR: ${ESC}[31mred` },
      },
    ]);
    await broker.close();
    const res = await runCli(['dlq', 'tasks', '--broker', env.url]);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toContain('HANDLER_ERROR: \\x1b[31mred');
    expect(res.stdout).toContain('raw \\x1b[2J body');
    expect(res.stdout).not.toContain(ESC);
  });
});
