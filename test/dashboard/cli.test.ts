/** `qtune dashboard`: the gateway without tokens on loopback, serving the page and its JSON. */
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, exited, killAll, runCli, startCli, tempBroker } from '../cli/helpers.js';
import { waitFor } from '../support/wait.js';

let env: ReturnType<typeof tempBroker>;
const children: ChildProcess[] = [];

beforeAll(() => {
  assertBuilt();
  env = tempBroker();
});

afterAll(async () => {
  killAll(children);
  await Promise.all(children.map((c) => exited(c)));
  env?.cleanup();
});

describe('qtune dashboard', () => {
  it('serves the dashboard on 127.0.0.1 without a token over the given broker and store, and stops on SIGTERM', async () => {
    const store = join(env.dir, 'store.db');
    const published = await runCli(['publish', 'jobs-q', '--broker', env.url], {
      input: '{"n":1}\n{"n":2}\n',
    });
    expect(published.code, published.stderr).toBe(0);
    const child = startCli(['dashboard', '--port', '0', '--broker', env.url, '--store', store]);
    children.push(child);
    const url = await waitFor(
      () => {
        if (child.exitCode !== null)
          throw new Error(`qtune dashboard exited: ${child.stderrText()}`);
        return /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(child.stderrText())?.[1];
      },
      20_000,
      'qtune dashboard to listen',
    );
    const page = await fetch(`${url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('/dashboard/app.js');
    const overview = (await (await fetch(`${url}/v1/dashboard/overview`)).json()) as {
      queues: { queue: string; ready: number }[];
    };
    expect(overview.queues.find((q) => q.queue === 'jobs-q')?.ready).toBe(2);
    child.kill('SIGTERM');
    expect((await exited(child)).code).toBe(0);
  });

  it('documents itself in --help', async () => {
    const help = await runCli(['dashboard', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--port <n>');
    expect(help.stdout).toContain('127.0.0.1');
  });
});
