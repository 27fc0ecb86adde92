import { describe, expect, it } from 'vitest';
import {
  createEnvelope,
  decode,
  DecodeError,
  encode,
  ErrorCode,
  MessageType,
  PROTOCOL_VERSION,
} from '../../src/protocol/index.js';

/** Small seeded PRNG (mulberry32) so the property test is repeatable. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomJson(next: () => number, depth = 0): unknown {
  const r = next();
  if (depth > 3 || r < 0.3) {
    const k = Math.floor(next() * 5);
    if (k === 0) return null;
    if (k === 1) return next() < 0.5;
    if (k === 2) return Math.round((next() - 0.5) * 1e6) / 100;
    if (k === 3)
      return String.fromCharCode(
        ...Array.from({ length: 8 }, () => 32 + Math.floor(next() * 2000)),
      );
    return '';
  }
  if (r < 0.65)
    return Array.from({ length: Math.floor(next() * 4) }, () => randomJson(next, depth + 1));
  const obj: Record<string, unknown> = {};
  for (let i = 0; i < Math.floor(next() * 4); i++) obj[`k${i}`] = randomJson(next, depth + 1);
  return obj;
}

describe('protocol codec', () => {
  it('round-trips an envelope with every field', () => {
    const env = createEnvelope({
      type: MessageType.Task,
      task: 'describe',
      payload: { name: 'ACME' },
      correlationId: 'c-1',
      replyTo: 'q.results',
      key: 'acme',
      attempt: 1,
      deadline: 1_900_000_000_000,
      headers: { batch: 'b-1', n: 3, ok: true, none: null },
    });
    expect(env.qtune).toBe(PROTOCOL_VERSION);
    expect(decode(encode(env))).toEqual(env);
  });

  it('round-trips random JSON payloads (seeded property test)', () => {
    const next = rng(42);
    for (let i = 0; i < 500; i++) {
      const payload = randomJson(next);
      const env = createEnvelope({ type: MessageType.Task, payload });
      expect(decode(encode(env)).payload).toEqual(payload);
    }
  });

  it.each([['"hello"'], ['42'], ['[1,2]'], ['{"prompt":"hi"}'], ['null']])(
    'takes the bare JSON body %s as the payload of a task',
    (body) => {
      const env = decode(body, { messageId: 'm-1', attempt: 2 });
      expect(env).toMatchObject({ type: 'task', id: 'm-1', attempt: 2, payload: JSON.parse(body) });
    },
  );

  it('gives a bare message a fresh id when the transport has none', () => {
    const a = decode('{"x":1}');
    const b = decode('{"x":1}');
    expect(a.id).not.toBe(b.id);
    expect(a.id.length).toBeGreaterThan(0);
  });

  it('rejects a body that is not JSON with MALFORMED_JSON, naming the source', () => {
    const err = (() => {
      try {
        decode('not json{', { source: 'queue "trials"' });
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(DecodeError);
    expect((err as DecodeError).code).toBe(ErrorCode.MalformedJson);
    expect((err as DecodeError).retry).toBe(false);
    expect((err as Error).message).toMatch(/^queue "trials": body is not valid JSON/);
  });

  it('rejects a newer major version with UNSUPPORTED_VERSION', () => {
    expect(() => decode('{"qtune":2,"id":"x","type":"task"}')).toThrowError(
      expect.objectContaining({ code: ErrorCode.UnsupportedVersion }),
    );
  });

  it('rejects an invalid envelope naming the field', () => {
    expect(() => decode('{"qtune":1,"id":"x","type":"task","attempt":"two"}')).toThrowError(
      /invalid envelope at "attempt"/,
    );
    expect(() => decode('{"qtune":1,"id":"x","type":"gossip"}')).toThrowError(
      expect.objectContaining({
        code: ErrorCode.InvalidEnvelope,
        message: expect.stringContaining('"type"'),
      }),
    );
  });

  it('ignores fields it does not know', () => {
    const env = decode('{"qtune":1,"id":"x","type":"event","payload":1,"futureField":{"a":1}}');
    expect(env).toMatchObject({ id: 'x', type: 'event', payload: 1 });
  });
});

describe('protocol codec, absent payload', () => {
  it('reads an envelope without payload as payload null', () => {
    expect(decode('{"qtune":1,"id":"x","type":"task"}').payload).toBeNull();
  });
});
