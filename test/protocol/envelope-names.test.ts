import { describe, expect, it } from 'vitest';
import type { DecodeError } from '../../src/protocol/index.js';
import {
  createEnvelope,
  decode,
  encode,
  ErrorCode,
  MessageType,
} from '../../src/protocol/index.js';

function decodeError(fields: Record<string, unknown>): DecodeError {
  const body = JSON.stringify({ qtune: 1, id: 'm1', type: 'task', payload: null, ...fields });
  try {
    decode(body, { source: 'queue "q"' });
  } catch (err) {
    return err as DecodeError;
  }
  throw new Error(`decoded ${body}`);
}

describe('envelope names', () => {
  it('refuses a replyTo with an escape sequence or a NUL, naming the field', () => {
    const esc = decodeError({ replyTo: 'results\u001b[2J' });
    expect(esc.code).toBe(ErrorCode.InvalidEnvelope);
    expect(esc.message).toMatch(
      /at "replyTo": replyTo name "results\\x1b\[2J" contains the control character U\+001B/,
    );
    expect(esc.message).not.toContain('\u001b');
    expect(decodeError({ replyTo: 'r\u0000' }).message).toMatch(/U\+0000/);
  });

  it('refuses a task name with control characters', () => {
    const err = decodeError({ task: 'train\u0007' });
    expect(err.code).toBe(ErrorCode.InvalidEnvelope);
    expect(err.message).toMatch(/at "task": task name .* U\+0007/);
  });

  it("refuses a replyTo longer than a broker's queue name may be", () => {
    expect(decodeError({ replyTo: 'r'.repeat(239) }).message).toMatch(
      /239 bytes long; the limit is 238/,
    );
  });

  it("accepts RabbitMQ's direct reply-to addresses and ordinary names", () => {
    const env = createEnvelope({
      type: MessageType.Request,
      payload: 1,
      task: 'score.*',
      replyTo: `amq.rabbitmq.reply-to.${'g2dkAA'.repeat(30)}`,
    });
    expect(decode(encode(env)).replyTo).toBe(env.replyTo);
    expect(decode(encode({ ...env, replyTo: 'jobs/companies.results' })).replyTo).toBe(
      'jobs/companies.results',
    );
  });
});
