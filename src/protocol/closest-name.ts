/**
 * "Did you mean ...?" for names typed on a command line: the candidate closest to a name that
 * does not exist, by edit distance.
 */

/** Edit distance (insertions, deletions, substitutions, adjacent swaps) between `a` and `b`. */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[][] = Array.from({ length: rows }, (_, i) =>
    Array.from({ length: cols }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        best = Math.min(best, d[i - 2]![j - 2]! + 1);
      }
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/**
 * The candidate closest to `name`, or undefined when none is close enough to be a likely typo:
 * at most a third of the name's length apart (at least 1, at most 3 edits; case differences
 * count half); a candidate that differs from it in case alone is always close enough. Ties go to
 * the candidate listed first. `name` itself is never suggested.
 */
export function closestName(name: string, candidates: Iterable<string>): string | undefined {
  const limit = Math.min(3, Math.max(1, Math.floor(name.length / 3)));
  let best: string | undefined;
  let bestScore = Infinity;
  for (const c of candidates) {
    if (c === name) continue;
    // Long names cost quadratic time; a candidate far longer or shorter cannot be close.
    if (Math.abs(c.length - name.length) > limit) continue;
    const folded = editDistance(name.toLowerCase(), c.toLowerCase());
    const score = folded + (editDistance(name, c) - folded) / 2;
    if ((score <= limit || folded === 0) && score < bestScore) {
      best = c;
      bestScore = score;
    }
  }
  return best;
}
