/**
 * Managing stored experiments outside a running scheduler: finding one by name (with the
 * closest existing name when it does not exist) and deleting one with its queues. The CLI and
 * the gateway both call these.
 */
import { NotFoundError } from '../protocol/errors.js';
import type { ExperimentRecord, ExperimentStore } from '../store/experiments.js';

/** Edit distance between two strings (insertions, deletions, substitutions). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        prev[j]! + 1,
        row[j - 1]! + 1,
        prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = row;
  }
  return prev[b.length]!;
}

/**
 * The name in `names` closest to `name`, when it is close enough to be a typo: at most a
 * third of the name's length in edits (at least 2); undefined otherwise.
 */
export function closestName(name: string, names: Iterable<string>): string | undefined {
  const limit = Math.max(2, Math.floor(name.length / 3));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of names) {
    if (candidate === name) continue;
    const d = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (d <= limit && d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** The stored experiment `name`; throws `NotFoundError` with the closest existing name. */
export async function findExperiment(
  store: ExperimentStore,
  name: string,
): Promise<ExperimentRecord> {
  const exp = await store.getExperiment(name);
  if (exp) return exp;
  const names = (await store.listExperiments()).map((e) => e.name);
  throw new NotFoundError('experiment', name, closestName(name, names));
}
