import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SearchSpace } from '../../src/automl/space.js';
import { InputError } from '../../src/protocol/errors.js';
import { createPruner, createSampler } from '../../src/scheduler/search.js';
import {
  experimentSpecJsonSchema,
  loadExperimentSpec,
  MAX_SPEC_BYTES,
  parseExperimentSpec,
} from '../../src/scheduler/spec.js';

const dir = mkdtempSync(join(tmpdir(), 'qtune-spec-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base = { name: 'e', space: { x: { type: 'float', low: 0, high: 1 } }, maxTrials: 10 };

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

describe('experiment spec', () => {
  it('fills defaults and reads durations', () => {
    const s = parseExperimentSpec({ ...base, trialTimeout: '90s', lease: '2m' });
    expect(s.objective).toEqual({ metric: 'value', direction: 'minimize' });
    expect(s.sampler).toEqual({ name: 'tpe', options: {} });
    expect(s.pruner).toEqual({ name: 'none', options: {} });
    expect(s.concurrency).toBe(2);
    expect(s.maxRetries).toBe(2);
    expect(s.trialTimeout).toBe(90_000);
    expect(s.lease).toBe(120_000);
  });

  it('names the field that is wrong', () => {
    expect(() => parseExperimentSpec({ ...base, maxTrials: 0 })).toThrow(/"maxTrials"/);
    expect(() => parseExperimentSpec({ ...base, trialTimeout: 'soon' })).toThrow(
      /"trialTimeout": "soon" is not a duration/,
    );
    expect(() => parseExperimentSpec({ ...base, sampler: { name: 'bayes' } })).toThrow(
      /"sampler.name"/,
    );
    expect(() => parseExperimentSpec({ ...base, name: 'a.b' })).toThrow(/"name"/);
    expect(() => parseExperimentSpec({ ...base, extra: 1 })).toThrow(InputError);
    expect(() =>
      parseExperimentSpec({ ...base, space: { x: { type: 'int', low: 5, high: 1 } } }),
    ).toThrow(/space: parameter "x": low \(5\) is above high \(1\)/);
  });

  it('refuses an http runner URL that is not http:// or https://, naming it', () => {
    expect(() => parseExperimentSpec({ ...base, runner: { http: 'ftp://models' } })).toThrow(
      /"runner.http": "ftp:\/\/models" is not an http:\/\/ or https:\/\/ URL/,
    );
    expect(() =>
      parseExperimentSpec({ ...base, runner: { http: ['http://127.0.0.1:8001', 'nope'] } }),
    ).toThrow(/"runner.http.1": "nope"/);
  });

  it('refuses a spec file over MAX_SPEC_BYTES without parsing it', () => {
    const path = file('huge.json', ' '.repeat(MAX_SPEC_BYTES + 1));
    expect(() => loadExperimentSpec(path)).toThrow(
      `the file is ${MAX_SPEC_BYTES + 1} bytes; the limit is ${MAX_SPEC_BYTES} (16 MiB)`,
    );
  });

  it('refuses an exec placeholder of a conditional parameter without a default, and takes {name:-default}', () => {
    const space = {
      opt: { type: 'categorical', choices: ['sgd', 'adam'] },
      momentum: { type: 'float', low: 0, high: 1, when: { opt: 'sgd' } },
    };
    expect(() =>
      parseExperimentSpec({ ...base, space, runner: { exec: 'train --opt {opt} --m {momentum}' } }),
    ).toThrow(
      /"runner.exec": placeholder \{momentum\} names the conditional parameter "momentum".*\{momentum:-0\}/,
    );
    for (const exec of ['train --m {momentum:-0.9}', 'train {momentum:-}', 'train ${momentum}']) {
      expect(parseExperimentSpec({ ...base, space, runner: { exec } }).runner).toEqual({ exec });
    }
  });

  it('reads YAML and reports a syntax error with its line', () => {
    const ok = file(
      'ok.yaml',
      'name: y\nspace:\n  lr: { type: float, low: 0.001, high: 1, log: true }\nmaxTrials: 3\nrunner: { module: ./t.mjs }\n',
    );
    const s = loadExperimentSpec(ok);
    expect(s.space.lr).toMatchObject({ type: 'float', log: true });
    // The module path is anchored at the spec file's folder.
    expect(s.runner).toEqual({ module: resolve(dir, 't.mjs') });
    const bad = file('bad.yaml', 'name: y\nspace:\n  lr: { type: float\nmaxTrials: 3\n');
    expect(() => loadExperimentSpec(bad)).toThrow(/bad\.yaml" line \d+: not valid YAML/);
    expect(() => loadExperimentSpec(join(dir, 'missing.yaml'))).toThrow(/cannot read it/);
  });

  it('gives an exec runner the spec folder as its working directory', () => {
    const p = file(
      'exec.json',
      JSON.stringify({ ...base, runner: { exec: 'python3 train.py {x}' } }),
    );
    expect(loadExperimentSpec(p).runner).toEqual({ exec: 'python3 train.py {x}', cwd: dir });
  });

  it('rejects an unknown sampler or pruner option, naming it and the known ones', () => {
    const space = SearchSpace.parse(base.space);
    const s = parseExperimentSpec({
      ...base,
      sampler: { name: 'tpe', options: { candidate: 10 } },
    });
    expect(() => createSampler(space, s)).toThrow(
      /sampler tpe: unknown option "candidate" \(known: .*candidates/,
    );
    const p = parseExperimentSpec({
      ...base,
      pruner: { name: 'asha', options: { minResourse: 1 } },
    });
    expect(() => createPruner(p)).toThrow(/pruner asha: unknown option "minResourse"/);
    const c = parseExperimentSpec({
      ...base,
      space: { k: { type: 'categorical', choices: ['a'] } },
      sampler: { name: 'cmaes' },
    });
    expect(() => createSampler(SearchSpace.parse(c.space), c)).toThrow(/"k" is categorical/);
  });

  it('hands budget.maxSteps to Hyperband as its maximum resource', () => {
    const s = parseExperimentSpec({
      ...base,
      pruner: { name: 'hyperband' },
      budget: { maxSteps: 27 },
    });
    expect(() => createPruner(s)).not.toThrow();
    const missing = parseExperimentSpec({ ...base, pruner: { name: 'hyperband' } });
    expect(() => createPruner(missing)).toThrow(/maxResource/);
  });

  it('ships a JSON Schema in sync with the validator', () => {
    const shipped = JSON.parse(
      readFileSync(resolve(import.meta.dirname, '../../schemas/experiment.schema.json'), 'utf8'),
    );
    expect(shipped).toEqual(experimentSpecJsonSchema());
  });

  it('accepts every example spec', () => {
    for (const f of ['branin.yaml', 'quadratic.yaml']) {
      expect(() =>
        loadExperimentSpec(resolve(import.meta.dirname, '../../examples/automl', f)),
      ).not.toThrow();
    }
  });
});
