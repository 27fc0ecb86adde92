import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedBroker } from '../../src/broker/embedded/index.js';
import { assertBuilt, runCli, tempBroker } from './helpers.js';

let env: ReturnType<typeof tempBroker> | undefined;
beforeAll(assertBuilt);
afterEach(() => env?.cleanup());

async function readyIn(url: string, queue: string): Promise<number | undefined> {
  const broker = await EmbeddedBroker.open({ path: url });
  try {
    if (!(await broker.listQueues()).includes(queue)) return undefined;
    return (await broker.stats(queue)).ready;
  } finally {
    await broker.close();
  }
}

describe('qtune publish', () => {
  it('refuses a task a worker would dead-letter, naming its line and field, and publishes nothing', async () => {
    env = tempBroker();
    const lines = [
      { id: 'a', n: 1 },
      { id: 'b', n: 2 },
      { id: 'k'.repeat(2000), n: 3 },
    ].map((o) => JSON.stringify(o));
    const res = await runCli(['publish', 'tasks', '--key-field', 'id', '--broker', env.url], {
      input: lines.join('\n') + '\n',
    });
    expect(res.code, res.stderr).toBe(2);
    expect(res.stderr).toContain(
      'qtune: stdin line 3: invalid envelope at "key": Too big: expected string to have <=1024 characters (got 2000)',
    );
    expect(await readyIn(env.url, 'tasks')).toBeUndefined();
  });

  it('refuses a queue name whose derived queues would not fit, before publishing', async () => {
    env = tempBroker();
    const res = await runCli(['publish', 'q'.repeat(255), '--broker', env.url], {
      input: '{"n":1}\n',
    });
    expect(res.code, res.stderr).toBe(2);
    expect(res.stderr).toMatch(/queue name "q+\.\.\." is 255 bytes long; the limit is 200/);
  });

  it('refuses JSON nested 10,000 deep with its line and the depth limit', async () => {
    env = tempBroker();
    const deep = '['.repeat(10_000) + ']'.repeat(10_000);
    const res = await runCli(['publish', 'tasks', '--broker', env.url], {
      input: `{"n":1}\n${deep}\n`,
    });
    expect(res.code, res.stderr).toBe(2);
    expect(res.stderr).toMatch(
      /^qtune: stdin line 2: invalid envelope at "payload": JSON nests deeper than 127 levels/,
    );
    expect(res.stderr).not.toMatch(/stack/i);
    expect(await readyIn(env.url, 'tasks')).toBeUndefined();
  });
});
