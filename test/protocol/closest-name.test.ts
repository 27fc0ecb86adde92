import { describe, expect, it } from 'vitest';
import { closestName, editDistance } from '../../src/protocol/closest-name.js';

describe('closestName', () => {
  it('suggests the existing name one typo away', () => {
    expect(closestName('promts', ['companies', 'prompts', 'prompts.results'])).toBe('prompts');
    expect(closestName('compnaies', ['companies', 'prompts'])).toBe('companies');
    expect(closestName('Prompts', ['prompts'])).toBe('prompts');
  });

  it('suggests nothing when no name is close, or when there are none', () => {
    expect(closestName('nonexist', ['companies', 'prompts'])).toBeUndefined();
    expect(closestName('a', ['b'])).toBe('b');
    expect(closestName('ab', ['xy'])).toBeUndefined();
    expect(closestName('anything', [])).toBeUndefined();
  });

  it('prefers the closer of two candidates, and never the name itself', () => {
    expect(closestName('jobs', ['jobs', 'job', 'jobz1'])).toBe('job');
    expect(closestName('trials', ['trail', 'trials1'])).toBe('trials1');
  });

  it('suggests a name a few edits away, and nothing for an unrelated one', () => {
    expect(closestName('promts', ['prompts', 'jobs'])).toBe('prompts');
    expect(closestName('BRANIN', ['branin'])).toBe('branin');
    expect(closestName('xyz', ['prompts', 'branin'])).toBeUndefined();
    expect(closestName('a', [])).toBeUndefined();
  });

  it('counts an adjacent swap as one edit', () => {
    expect(editDistance('ab', 'ba')).toBe(1);
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
  });
});
