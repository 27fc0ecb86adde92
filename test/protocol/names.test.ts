import { describe, expect, it } from 'vitest';
import {
  assertName,
  InputError,
  MAX_QUEUE_NAME_BYTES,
  nameProblem,
  printable,
} from '../../src/protocol/index.js';

describe('names', () => {
  it('accepts ordinary queue names', () => {
    for (const name of [
      'prompts',
      'qtune.exp.branin',
      'jobs/companies-2',
      'données',
      'a:b@c_d-e',
    ]) {
      expect(nameProblem('queue', name)).toBeUndefined();
    }
  });

  it('refuses control characters, escape sequences and bidi overrides, naming where', () => {
    expect(nameProblem('queue', 'q\u001b[31mred')).toMatch(/control character U\+001B at index 1/);
    expect(nameProblem('queue', 'q\u0000')).toMatch(/U\+0000 at index 1/);
    expect(nameProblem('queue', 'abc\u202Egnp.exe')).toMatch(/U\+202E at index 3/);
    expect(nameProblem('queue', 'tab\there')).toMatch(/U\+0009/);
  });

  it('refuses names longer than the limit in bytes, not characters', () => {
    expect(nameProblem('queue', 'a'.repeat(MAX_QUEUE_NAME_BYTES))).toBeUndefined();
    expect(nameProblem('queue', 'a'.repeat(MAX_QUEUE_NAME_BYTES + 1))).toMatch(
      /201 bytes long; the limit is 200/,
    );
    expect(nameProblem('queue', 'é'.repeat(101))).toMatch(/202 bytes long/);
  });

  it('refuses wildcards, empty names, amq. names and surrounding white space', () => {
    expect(nameProblem('queue', 'a.*')).toMatch(/wildcard/);
    expect(nameProblem('queue', '#')).toMatch(/wildcard/);
    expect(nameProblem('queue', '')).toMatch(/empty/);
    expect(nameProblem('queue', 'amq.gen-1')).toMatch(/amq\./);
    expect(nameProblem('replyTo', 'amq.rabbitmq.reply-to', { allowAmq: true })).toBeUndefined();
    expect(nameProblem('job', ' x')).toMatch(/white space/);
  });

  it('assertName throws an InputError with the problem', () => {
    expect(() => assertName('job', 'a\u0007')).toThrow(InputError);
    expect(() => assertName('job', 'a\u0007')).toThrow(
      /job name "a\\x07" contains the control character U\+0007/,
    );
  });

  it('printable escapes what a terminal would act on and keeps the rest', () => {
    expect(printable('ok\u001b[2Jgone\u0000é\u202E')).toBe('ok\\x1b[2Jgone\\x00é\\u{202e}');
  });
});
