/**
 * Experiments as the store holds them: finding one by name, with the closest existing name
 * when it does not exist, and reading its stored spec. The scheduler resumes through these;
 * the experiment domain layer (src/experiment/) answers every question about one through them.
 */
import { closestName } from '../protocol/closest-name.js';
import { NotFoundError } from '../protocol/errors.js';
import type { ExperimentRecord, ExperimentStore } from '../store/experiments.js';
import { parseExperimentSpec, type ExperimentSpec } from './spec.js';

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

/** A stored experiment and its parsed spec. */
export interface StoredExperiment {
  record: ExperimentRecord;
  spec: ExperimentSpec;
}

/**
 * The stored experiment `name` with its spec parsed: `NotFoundError` for an unknown name,
 * `InputError` for a stored spec this version cannot read.
 */
export async function loadExperiment(
  store: ExperimentStore,
  name: string,
): Promise<StoredExperiment> {
  const record = await findExperiment(store, name);
  return { record, spec: parseStoredSpec(record) };
}

/** The spec of a stored experiment, parsed; `InputError` when this version cannot read it. */
export function parseStoredSpec(record: ExperimentRecord): ExperimentSpec {
  return parseExperimentSpec(record.spec, `stored spec of experiment "${record.name}"`);
}
