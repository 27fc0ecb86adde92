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

  it('holds tasks published with --delay until the delay has passed, then delivers them', async () => {
    env = tempBroker();
    const publishedFrom = Date.now();
    const res = await runCli(['publish', 'later', '--delay', '5s', '--json', '--broker', env.url], {
      input: '{"n":1}\n{"n":2}\n',
    });
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout) as { published: number; notBefore: string };
    expect(out.published).toBe(2);
    const notBefore = Date.parse(out.notBefore);
    expect(notBefore).toBeGreaterThanOrEqual(publishedFrom + 5000);
    const broker = await EmbeddedBroker.open({ path: env.url });
    try {
      const stats = await broker.stats('later');
      expect(Date.now()).toBeLessThan(notBefore);
      expect(stats).toMatchObject({ ready: 0, delayed: 2 });
      const deliveredAt: number[] = [];
      const consumer = await broker.consume('later', async (d) => {
        deliveredAt.push(Date.now());
        await d.ack();
      });
      await expect.poll(() => deliveredAt.length, { timeout: 20_000 }).toBe(2);
      await consumer.cancel();
      // None came before the delay, counted from before the command started.
      for (const t of deliveredAt) expect(t).toBeGreaterThanOrEqual(publishedFrom + 5000);
    } finally {
      await broker.close();
    }
  });

  it('documents --delay and refuses a delay that is not a duration', async () => {
    const help = await runCli(['publish', '--help']);
    expect(help.stdout).toMatch(/--delay <duration>/);
    env = tempBroker();
    const res = await runCli(['publish', 'later', '--delay', 'soon', '--broker', env.url], {
      input: '{"n":1}\n',
    });
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/"soon" is not a duration/);
    expect(await readyIn(env.url, 'later')).toBeUndefined();
  });
});
