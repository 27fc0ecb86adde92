import { afterEach, describe, expect, it } from 'vitest';
import {
  TOKENS,
  call,
  errorCodeOf,
  errorMessageOf,
  startGateway,
  type TestGateway,
} from './helpers.js';

let g: TestGateway | undefined;
afterEach(async () => {
  await g?.close();
  g = undefined;
});

async function queueWith(gw: TestGateway, queue: string, n: number): Promise<void> {
  await gw.broker.declareQueue(queue);
  await gw.broker.publish(
    queue,
    Array.from({ length: n }, (_, i) => ({ body: JSON.stringify({ i }) })),
  );
}

describe('gateway management routes', () => {
  it('purges a queue for an admin and answers how many tasks it removed', async () => {
    g = await startGateway();
    await queueWith(g, 'prompts', 5);
    const res = await call(g.url, 'POST', '/v1/queues/prompts/purge', { token: TOKENS.admin });
    expect(res.status, res.text).toBe(200);
    expect(res.json).toEqual({ queue: 'prompts', purged: 5 });
    expect((await g.broker.stats('prompts')).ready).toBe(0);
  });

  it('refuses purge, pause, resume and job cancel to producer and worker tokens (403)', async () => {
    g = await startGateway({ status: { job: async () => ({ queue: 'prompts' }) } });
    await queueWith(g, 'prompts', 3);
    for (const token of [TOKENS.producer, TOKENS.worker]) {
      for (const path of [
        '/v1/queues/prompts/purge',
        '/v1/queues/prompts/pause',
        '/v1/queues/prompts/resume',
        '/v1/jobs/prompts/cancel',
      ]) {
        const res = await call(g.url, 'POST', path, { token });
        expect(res.status, path).toBe(403);
        expect(errorCodeOf(res)).toBe('FORBIDDEN');
      }
    }
    const none = await call(g.url, 'POST', '/v1/queues/prompts/purge');
    expect(none.status).toBe(401);
    expect((await g.broker.stats('prompts')).ready).toBe(3);
  });

  it('pauses and resumes a queue, shown in its statistics', async () => {
    g = await startGateway();
    await queueWith(g, 'prompts', 1);
    const paused = await call(g.url, 'POST', '/v1/queues/prompts/pause', { token: TOKENS.admin });
    expect(paused.status, paused.text).toBe(200);
    expect(paused.json).toEqual({ queue: 'prompts', paused: true });
    expect((await g.broker.stats('prompts')).paused).toBe(true);
    const resumed = await call(g.url, 'POST', '/v1/queues/prompts/resume', {
      token: TOKENS.admin,
    });
    expect(resumed.json).toEqual({ queue: 'prompts', paused: false });
    expect((await g.broker.stats('prompts')).paused).toBe(false);
  });

  it('answers 404 in the error shape for an unknown queue, with the closest name, creating nothing', async () => {
    g = await startGateway();
    await queueWith(g, 'prompts', 1);
    for (const verb of ['purge', 'pause', 'resume']) {
      const res = await call(g.url, 'POST', `/v1/queues/promts/${verb}`, { token: TOKENS.admin });
      expect(res.status, verb).toBe(404);
      expect(errorCodeOf(res)).toBe('NOT_FOUND');
      expect(errorMessageOf(res)).toBe('queue "promts" does not exist (did you mean "prompts"?)');
    }
    expect(await g.broker.listQueues()).not.toContain('promts');
  });

  it("cancels a job: its waiting tasks are removed from the job's queue", async () => {
    g = await startGateway({
      status: { job: async (name) => (name === 'companies' ? { queue: 'companies' } : undefined) },
    });
    await queueWith(g, 'companies', 4);
    const res = await call(g.url, 'POST', '/v1/jobs/companies/cancel', { token: TOKENS.admin });
    expect(res.status, res.text).toBe(200);
    expect(res.json).toEqual({ job: 'companies', queue: 'companies', removed: 4, inFlight: 0 });
    expect((await g.broker.stats('companies')).ready).toBe(0);
    const unknown = await call(g.url, 'POST', '/v1/jobs/nope/cancel', { token: TOKENS.admin });
    expect(unknown.status).toBe(404);
    expect(errorCodeOf(unknown)).toBe('NOT_FOUND');
  });
});
