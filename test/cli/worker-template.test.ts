import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TaskResult } from '../../src/protocol/result.js';
import { assertBuilt, killAll, readResults, runCli, startCli, tempBroker } from './helpers.js';
import { waitFor } from '../support/wait.js';

/** A completion server that records every body it is sent and answers with the prompt's length. */
interface CompletionServer {
  url: string;
  bodies: unknown[];
  server: Server;
}

async function completionServer(): Promise<CompletionServer> {
  const bodies: unknown[] = [];
  const server = createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => {
      const body = JSON.parse(text) as { prompt?: unknown };
      bodies.push(body);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ choices: [{ text: `seen ${JSON.stringify(body.prompt)}` }] }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/v1/completions`, bodies, server };
}

let env: ReturnType<typeof tempBroker> | undefined;
const children: ReturnType<typeof startCli>[] = [];
const servers: Server[] = [];
beforeAll(() => assertBuilt());
afterEach(async () => {
  killAll(children);
  children.length = 0;
  await Promise.all(
    servers.splice(0).map((s) => {
      s.closeAllConnections();
      return new Promise((resolve) => s.close(resolve));
    }),
  );
  env?.cleanup();
  env = undefined;
});

async function publish(queue: string, brokerUrl: string, lines: unknown[]): Promise<void> {
  const res = await runCli(['publish', queue, '--key-field', 'id', '--broker', brokerUrl], {
    input: lines.map((l) => JSON.stringify(l)).join('\n') + '\n',
  });
  expect(res.code, res.stderr).toBe(0);
}

/** Reads results until every key in `keys` has one. */
async function resultsFor(queue: string, brokerUrl: string, keys: string[]): Promise<TaskResult[]> {
  const results: TaskResult[] = [];
  await waitFor(
    async () => {
      results.push(...(await readResults(queue, brokerUrl)));
      return keys.every((k) => results.some((r) => r.key === k));
    },
    40_000,
    `results for ${keys.join(', ')}`,
  );
  return results;
}

describe('qtune worker --template', () => {
  it('posts the filled text template, dead-letters an item that cannot fill it and keeps serving', async () => {
    env = tempBroker();
    const llm = await completionServer();
    servers.push(llm.server);
    const template = join(env.dir, 'prompt.txt');
    writeFileSync(template, 'Describe {{name}} ({{ place.country }}) in {{words}} words.');
    const q = 'prompts';
    const worker = startCli([
      'worker',
      q,
      '--broker',
      env.url,
      '--http',
      llm.url,
      '--template',
      template,
      '--price-per-hour',
      '2.5',
      '--backoff',
      '100ms',
    ]);
    children.push(worker);
    await publish(q, env.url, [
      { id: 'acme', name: 'Acme', place: { country: 'FR' }, words: 50 },
      { id: 'nameless', place: { country: 'IT' }, words: 10 },
      { id: 'beta', name: 'Beta "B"', place: { country: 'DE' }, words: 20 },
    ]);

    const results = await resultsFor(q, env.url, ['acme', 'nameless', 'beta']);
    const sorted = [...llm.bodies].sort((a, b) =>
      JSON.stringify(a).localeCompare(JSON.stringify(b)),
    );
    expect(sorted).toEqual([
      { prompt: 'Describe Acme (FR) in 50 words.' },
      { prompt: 'Describe Beta "B" (DE) in 20 words.' },
    ]);
    const acme = results.find((r) => r.key === 'acme')!;
    expect(acme.ok).toBe(true);
    expect(acme.value).toEqual({
      choices: [{ text: 'seen "Describe Acme (FR) in 50 words."' }],
    });
    const nameless = results.find((r) => r.key === 'nameless')!;
    expect(nameless.ok).toBe(false);
    expect(nameless.attempt).toBe(1);
    expect(nameless.error).toEqual({
      code: 'BAD_INPUT',
      message: `template "${template}": item has no field "name"`,
    });
    for (const r of results) expect(r.worker.pricePerHour).toBe(2.5);

    const dlq = await runCli(['dlq', q, '--json', '--broker', env.url]);
    const dead = dlq.stdout
      .split('\n')
      .filter((l) => l)
      .map((l) => JSON.parse(l) as { reason: string; body: string });
    expect(dead).toHaveLength(1);
    expect(dead[0]!.reason).toBe(`BAD_INPUT: template "${template}": item has no field "name"`);
    expect(dead[0]!.body).toContain('nameless');

    // The worker is still serving, and a payload that is not an object fails the same way.
    expect(worker.exitCode).toBeNull();
    const res = await runCli(['publish', q, '--broker', env.url], {
      input: '"just text"\n{"id":"gamma","name":"Gamma","place":{"country":"ES"},"words":5}\n',
    });
    expect(res.code, res.stderr).toBe(0);
    const more: TaskResult[] = [];
    await waitFor(
      async () => {
        more.push(...(await readResults(q, env!.url)));
        return more.length >= 2;
      },
      40_000,
      'results of the text payload and gamma',
    );
    expect(more.filter((r) => r.ok).map((r) => r.value)).toEqual([
      { choices: [{ text: 'seen "Describe Gamma (ES) in 5 words."' }] },
    ]);
    expect(more.find((r) => !r.ok)?.error?.message).toBe(
      `template "${template}": the payload is a string, expected an object with "name", "place.country", "words"`,
    );
    expect(llm.bodies).toHaveLength(3);
    expect(worker.exitCode).toBeNull();
  }, 90_000);

  it('posts a filled JSON template with values kept as their types; the price comes from the environment', async () => {
    env = tempBroker();
    const llm = await completionServer();
    const other = await completionServer();
    servers.push(llm.server, other.server);
    const template = join(env.dir, 'body.json');
    writeFileSync(
      template,
      JSON.stringify({
        model: 'local',
        prompt: 'Q: {{question}}',
        max_tokens: '{{ max }}',
        stop: '{{stop}}',
        metadata: { source: '{{meta}}' },
      }),
    );
    const q = 'json-prompts';
    const worker = startCli(
      [
        'worker',
        q,
        '--broker',
        env.url,
        '--http',
        `${llm.url},${other.url}`,
        '--template',
        template,
        '--concurrency',
        '2',
      ],
      { QTUNE_PRICE_PER_HOUR: '0.75' },
    );
    children.push(worker);
    await publish(q, env.url, [
      { id: 'one', question: 'why?', max: 32, stop: ['\n', '###'], meta: { row: 1 } },
      { id: 'two', question: 'how?', max: 8, stop: null, meta: 'csv' },
    ]);

    const results = await resultsFor(q, env.url, ['one', 'two']);
    expect(results.every((r) => r.ok)).toBe(true);
    expect(results.map((r) => r.worker.pricePerHour)).toEqual([0.75, 0.75]);
    const bodies = [...llm.bodies, ...other.bodies];
    const byPrompt = (p: string) => bodies.find((b) => (b as { prompt: string }).prompt === p);
    expect(bodies).toHaveLength(2);
    expect(byPrompt('Q: why?')).toEqual({
      model: 'local',
      prompt: 'Q: why?',
      max_tokens: 32,
      stop: ['\n', '###'],
      metadata: { source: { row: 1 } },
    });
    expect(byPrompt('Q: how?')).toEqual({
      model: 'local',
      prompt: 'Q: how?',
      max_tokens: 8,
      stop: null,
      metadata: { source: 'csv' },
    });
  }, 90_000);

  it('exits 2 naming the problem when the template or the price is wrong', async () => {
    env = tempBroker();
    const missing = join(env.dir, 'missing.txt');
    const noFile = await runCli([
      'worker',
      'q',
      '--exec',
      'cat',
      '--template',
      missing,
      '--broker',
      env.url,
    ]);
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toContain(`template "${missing}": no such file`);

    const broken = join(env.dir, 'broken.json');
    writeFileSync(broken, '{\n  "prompt": "{{q}}",\n  oops\n}');
    const badJson = await runCli([
      'worker',
      'q',
      '--exec',
      'cat',
      '--template',
      broken,
      '--broker',
      env.url,
    ]);
    expect(badJson.code).toBe(2);
    expect(badJson.stderr).toContain(`template "${broken}": not valid JSON at line 3 column 3`);

    const badPrice = await runCli(['worker', 'q', '--exec', 'cat', '--price-per-hour', 'cheap']);
    expect(badPrice.code).toBe(2);
    expect(badPrice.stderr).toContain('"cheap" is not a price per hour');

    const trial = await runCli([
      'worker',
      'q',
      '--trial',
      '--exec',
      'true',
      '--template',
      broken,
      '--broker',
      env.url,
    ]);
    expect(trial.code).toBe(2);
    expect(trial.stderr).toContain('--template fills task payloads');
  });
});
