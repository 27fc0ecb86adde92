import { describe, expect, it } from 'vitest';
import {
  checkJsonDepth,
  decode,
  DecodeError,
  ErrorCode,
  InputError,
  jsonDepthProblem,
  jsonTextDepth,
  MAX_JSON_DEPTH,
} from '../../src/protocol/index.js';

/** `[[[...]]]` nested `n` deep, built without recursion. */
function nested(n: number): unknown {
  let v: unknown = [];
  for (let i = 1; i < n; i++) v = [v];
  return v;
}

describe('JSON depth', () => {
  it('counts the nesting of JSON text, not brackets inside strings', () => {
    expect(jsonTextDepth('1')).toBe(0);
    expect(jsonTextDepth('{"a":[{"b":[]}]}')).toBe(4);
    expect(jsonTextDepth('{"a":"[[[{{{\\"[[["}')).toBe(1);
    expect(jsonTextDepth('['.repeat(10_000) + ']'.repeat(10_000))).toBe(MAX_JSON_DEPTH + 1);
  });

  it('refuses a value nested 10,000 deep without overflowing the stack', () => {
    expect(jsonDepthProblem(nested(MAX_JSON_DEPTH))).toBeUndefined();
    expect(jsonDepthProblem(nested(MAX_JSON_DEPTH + 1))).toMatch(/nests deeper than 128 levels/);
    expect(jsonDepthProblem(nested(10_000))).toMatch(/deeper than 128/);
    expect(() => checkJsonDepth(nested(10_000), 'line 4')).toThrow(InputError);
    expect(() => checkJsonDepth(nested(10_000), 'line 4')).toThrow(/^line 4: JSON nests/);
    const circular: Record<string, unknown> = { a: 1 };
    circular.self = circular;
    expect(jsonDepthProblem(circular)).toMatch(/deeper than/);
  });
});

describe('decode of bytes that are not UTF-8', () => {
  it('is MALFORMED_JSON naming the first bad byte, even inside a JSON string', () => {
    const body = Buffer.concat([
      Buffer.from('{"name":"caf'),
      Buffer.from([0xc3, 0x28]),
      Buffer.from('"}'),
    ]);
    let err: unknown;
    try {
      decode(body, { source: 'queue "q"' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DecodeError);
    expect((err as DecodeError).code).toBe(ErrorCode.MalformedJson);
    expect((err as Error).message).toBe(
      'queue "q": body is not valid UTF-8 (first bad byte at offset 12)',
    );
    expect(() => decode(Buffer.from([0x22, 0xff, 0x22]))).toThrow(/offset 1/);
  });

  it('reads valid multi-byte UTF-8', () => {
    expect(decode(Buffer.from('{"name":"café 東京 🚀"}')).payload).toEqual({
      name: 'café 東京 🚀',
    });
  });
});
