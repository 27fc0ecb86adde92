import { describe, expect, it } from 'vitest';
import { parseTokenList } from '../../src/gateway/auth.js';

describe('QTUNE_TOKENS errors', () => {
  it('never print a token put where the role or the name belongs', () => {
    const token = 'S3cret/Token+Value=0123456789';
    for (const value of [`alice:${token}:admin`, `${token}:admin:x`, `a:b:c,${token}`]) {
      let message = '';
      try {
        parseTokenList(value);
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).not.toBe('');
      expect(message).not.toContain('S3cret');
    }
    expect(() => parseTokenList(`alice:${token}:admin`)).toThrow(/29 characters, not shown/);
  });
});
