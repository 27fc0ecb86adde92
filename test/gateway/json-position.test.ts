import { describe, expect, it } from 'vitest';
import { findJsonError, jsonErrorPosition, lineColumn } from '../../src/gateway/json-position.js';
import { parseTokenList } from '../../src/gateway/auth.js';
import { deterministicId } from '../../src/gateway/idempotency.js';

/** A small seeded generator (mulberry32), so failures reproduce. */
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

function randomValue(r: () => number, depth = 0): unknown {
  const k = Math.floor(r() * (depth > 3 ? 5 : 7));
  if (k === 0) return null;
  if (k === 1) return r() < 0.5;
  if (k === 2) return Math.round((r() - 0.5) * 1e6) / (r() < 0.5 ? 1 : 1000);
  if (k === 3) return 'sé\\"\n\u0001' + String(r()).slice(2, 6);
  if (k === 4) return '';
  if (k === 5) return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
  const o: Record<string, unknown> = {};
  for (let i = 0; i < Math.floor(r() * 4); i++) o[`k${i}`] = randomValue(r, depth + 1);
  return o;
}

describe('JSON error positions', () => {
  it('finds no error in any valid JSON text', () => {
    const r = rng(7);
    for (let i = 0; i < 500; i++) {
      const text = JSON.stringify(randomValue(r), null, r() < 0.5 ? 2 : undefined);
      expect(findJsonError(text), text).toBeUndefined();
    }
  });

  it('finds an error, inside the text, wherever JSON.parse fails on a corrupted text', () => {
    const r = rng(11);
    let corrupted = 0;
    for (let i = 0; i < 500; i++) {
      const text = JSON.stringify(randomValue(r));
      const at = Math.floor(r() * text.length);
      const bad = text.slice(0, at) + '{,:]"x'[Math.floor(r() * 6)] + text.slice(at + 1);
      let parses = true;
      try {
        JSON.parse(bad);
      } catch {
        parses = false;
      }
      const err = findJsonError(bad);
      expect(err === undefined, bad).toBe(parses);
      if (err) {
        corrupted++;
        expect(err.index).toBeGreaterThanOrEqual(0);
        expect(err.index).toBeLessThanOrEqual(bad.length);
      }
    }
    expect(corrupted).toBeGreaterThan(100);
  });

  it('names byte offset, line and column, counting multi-byte characters as bytes', () => {
    // The error is character 10; "é" takes two bytes, so it is byte 11.
    const text = '["é",\n  1,,2]';
    expect(lineColumn(text, text.indexOf(',,') + 1)).toEqual({ line: 2, column: 5 });
    expect(jsonErrorPosition(text, 'fallback')).toMatch(
      /^byte 11 \(line 2, column 5\): unexpected ","/,
    );
  });
});

describe('token lists and deterministic ids', () => {
  it('parses name:role:token entries, keeping colons inside the token, and names a bad entry', () => {
    const [a, b] = parseTokenList('a:worker:0123456789abcdef:x, b:admin:fedcba9876543210');
    expect(a).toMatchObject({ name: 'a', role: 'worker' });
    expect(b).toMatchObject({ name: 'b', role: 'admin' });
    expect(() => parseTokenList('c:boss:0123456789abcdef')).toThrow(/role "boss"/);
    expect(() => parseTokenList('d:worker:short')).toThrow(/at least 16/);
    expect(() => parseTokenList('no-colons')).toThrow(/entry 1/);
  });

  it('derives the same UUID-shaped id from the same name, key and index only', () => {
    const id = deterministicId('alice', 'k1', 0);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(deterministicId('alice', 'k1', 0)).toBe(id);
    expect(deterministicId('alice', 'k1', 1)).not.toBe(id);
    expect(deterministicId('bob', 'k1', 0)).not.toBe(id);
    expect(deterministicId('alice', 'k2', 0)).not.toBe(id);
  });
});
