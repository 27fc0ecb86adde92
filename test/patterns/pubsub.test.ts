import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Consumer } from '../../src/broker/contract.js';
import type { MemoryBroker } from '../../src/broker/memory/index.js';
import { TOPIC_HEADER, publishEvent, subscribeEvents } from '../../src/patterns/pubsub.js';
import { memoryBroker } from '../worker/helpers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function setup(): MemoryBroker {
  const broker = memoryBroker();
  cleanup.push(() => broker.close());
  return broker;
}

function track(c: Consumer): Consumer {
  cleanup.push(() => c.cancel());
  return c;
}

describe('pub/sub', () => {
  it('delivers events to matching subscriptions with their topic and payload', async () => {
    const broker = setup();
    const trials: [unknown, string][] = [];
    const all: string[] = [];
    track(
      await subscribeEvents(
        broker,
        'exp.*.trial.#',
        (payload, topic) => void trials.push([payload, topic]),
      ),
    );
    track(
      await subscribeEvents(broker, '#', (_payload, topic, env) => {
        expect(env.type).toBe('event');
        expect(env.headers?.[TOPIC_HEADER]).toBe(topic);
        all.push(topic);
      }),
    );
    await publishEvent(broker, 'exp.mnist.trial.completed', { trial: 3, score: 0.98 });
    await publishEvent(broker, 'exp.mnist.started', { at: 1 });
    await vi.waitFor(() => expect(all).toHaveLength(2));
    await vi.waitFor(() => expect(trials).toHaveLength(1));
    expect(trials[0]).toEqual([{ trial: 3, score: 0.98 }, 'exp.mnist.trial.completed']);
    expect(all.sort()).toEqual(['exp.mnist.started', 'exp.mnist.trial.completed']);
  });

  it('keeps caller headers next to the topic header', async () => {
    const broker = setup();
    const got = vi.fn();
    track(await subscribeEvents(broker, 'a.b', (_p, _t, env) => got(env.headers, env.key)));
    await publishEvent(broker, 'a.b', null, { headers: { source: 'test' }, key: 'e-1' });
    await vi.waitFor(() =>
      expect(got).toHaveBeenCalledWith({ source: 'test', [TOPIC_HEADER]: 'a.b' }, 'e-1'),
    );
  });

  it('reports an event it cannot decode and keeps delivering the next ones', async () => {
    const broker = setup();
    const errors = vi.fn();
    const payloads: unknown[] = [];
    track(
      await subscribeEvents(broker, 'logs.#', (p) => void payloads.push(p), {
        onError: (e) => errors(e.message),
      }),
    );
    await broker.publishTopic('logs.raw', [{ body: 'not json{' }]);
    await publishEvent(broker, 'logs.ok', 'fine');
    await vi.waitFor(() => expect(payloads).toEqual(['fine']));
    expect(errors).toHaveBeenCalledWith(
      expect.stringMatching(/subscription "logs\.#": body is not valid JSON/),
    );
  });
});
