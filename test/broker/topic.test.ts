import { describe, expect, it } from 'vitest';
import { assertTopicPattern, topicMatches } from '../../src/broker/topic.js';

describe('topicMatches', () => {
  const cases: [pattern: string, topic: string, matches: boolean][] = [
    // exact words
    ['a.b.c', 'a.b.c', true],
    ['a.b.c', 'a.b', false],
    ['a.b', 'a.b.c', false],
    ['a.b.c', 'a.x.c', false],
    // * is exactly one word
    ['a.*', 'a.b', true],
    ['a.*', 'a', false],
    ['a.*', 'a.b.c', false],
    ['*.b', 'a.b', true],
    ['*', 'a', true],
    ['*', 'a.b', false],
    ['a.*.c', 'a.b.c', true],
    ['a.*.c', 'a.c', false],
    // * matches one empty word, never zero words
    ['a.*', 'a.', true],
    ['*.*', 'a', false],
    // # at the end: zero or more words
    ['a.#', 'a', true],
    ['a.#', 'a.b', true],
    ['a.#', 'a.b.c.d', true],
    ['a.#', 'b.a', false],
    // # at the start
    ['#.z', 'z', true],
    ['#.z', 'a.b.z', true],
    ['#.z', 'a.z.b', false],
    // # in the middle
    ['a.#.z', 'a.z', true],
    ['a.#.z', 'a.b.z', true],
    ['a.#.z', 'a.b.c.z', true],
    ['a.#.z', 'a.b.c', false],
    ['a.#.z', 'b.z', false],
    // # alone and combinations
    ['#', 'anything.at.all', true],
    ['#', 'a', true],
    ['#.#', 'a.b', true],
    ['#.*', 'a', true],
    ['#.*', 'a.b.c', true],
    ['*.#', 'a', true],
    ['*.#.*', 'a', false],
    ['*.#.*', 'a.b', true],
    ['a.#.b.#.c', 'a.x.b.y.y.c', true],
    ['a.#.b.#.c', 'a.b.c', true],
    ['a.#.b.#.c', 'a.c.b', false],
  ];

  it.each(cases)('pattern %j against topic %j matches: %j', (pattern, topic, matches) => {
    expect(topicMatches(pattern, topic)).toBe(matches);
  });
});

describe('assertTopicPattern', () => {
  it.each(['a', 'a.*', '#', 'a.#.b'])('accepts %j', (pattern) => {
    expect(() => assertTopicPattern(pattern)).not.toThrow();
  });

  it.each(['', 'a..b', '.a', 'a.'])('rejects %j naming it', (pattern) => {
    expect(() => assertTopicPattern(pattern)).toThrow(`"${pattern}"`);
  });
});
