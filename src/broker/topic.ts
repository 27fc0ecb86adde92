/**
 * AMQP topic matching: `pattern` and `topic` are words separated by `.`; `*` matches exactly one
 * word and `#` zero or more words.
 */
export function topicMatches(pattern: string, topic: string): boolean {
  return matchWords(pattern.split('.'), 0, topic.split('.'), 0);
}

function matchWords(p: string[], pi: number, t: string[], ti: number): boolean {
  while (pi < p.length) {
    const word = p[pi];
    if (word === '#') {
      // Collapse consecutive '#' and try every split point.
      while (pi + 1 < p.length && p[pi + 1] === '#') pi++;
      if (pi === p.length - 1) return true;
      for (let k = ti; k <= t.length; k++) if (matchWords(p, pi + 1, t, k)) return true;
      return false;
    }
    if (ti >= t.length) return false;
    if (word !== '*' && word !== t[ti]) return false;
    pi++;
    ti++;
  }
  return ti === t.length;
}

/** Throws when `pattern` is not a valid topic pattern (empty words are not allowed). */
export function assertTopicPattern(pattern: string): void {
  if (pattern.length === 0 || pattern.split('.').some((w) => w.length === 0)) {
    throw new Error(`topic pattern "${pattern}": words must be non-empty, separated by "."`);
  }
}
