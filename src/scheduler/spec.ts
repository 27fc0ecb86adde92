/**
 * The experiment spec: what to search, how, and how trials run. Read from YAML or JSON,
 * validated with zod; `experimentSpecJsonSchema()` gives the JSON Schema editors check
 * spec files with (schemas/experiment.schema.json).
 */
import { readFileSync, statSync } from 'node:fs';
import { dirname, extname, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { MAX_CHOICES, SearchSpace, spaceSchema } from '../automl/space.js';
import { redact } from '../protocol/redact.js';
import { durationMs } from '../protocol/duration.js';
import { InputError } from '../protocol/errors.js';
import { placeholdersOf } from '../worker/trial/placeholders.js';

const duration = z.union([z.number().int().positive(), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number') return v;
  const ms = durationMs(v);
  if (ms === undefined || ms <= 0) {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not a duration (e.g. 500ms, 30s, 5m, 2h)` });
    return z.NEVER;
  }
  return ms;
});

/** Largest spec file read, in bytes: a space within its limits is far smaller. */
export const MAX_SPEC_BYTES = 16 * 1024 * 1024;

/** Sampler names the scheduler knows. */
export const SAMPLERS = ['random', 'grid', 'tpe', 'cmaes'] as const;
/** Pruner names the scheduler knows. */
export const PRUNERS = ['none', 'median', 'asha', 'hyperband'] as const;

const httpUrl = z
  .string()
  .min(1)
  .superRefine((v, ctx) => {
    if (!(URL.canParse(v) && /^https?:$/.test(new URL(v).protocol))) {
      ctx.addIssue({ code: 'custom', message: `"${redact(v)}" is not an http:// or https:// URL` });
    }
  });

const runnerSchema = z.union([
  z.strictObject({
    module: z
      .string()
      .min(1)
      .describe('JS module whose default export is async (params, trial) => value'),
  }),
  z.strictObject({
    exec: z
      .string()
      .min(1)
      .describe(
        'shell command template; {name} placeholders are replaced by parameter values, {name:-default} by the default when the parameter is inactive',
      ),
    cwd: z
      .string()
      .optional()
      .describe("the command's working directory (default: the spec file's folder)"),
  }),
  z.strictObject({
    http: z
      .union([httpUrl, z.array(httpUrl).min(1)])
      .describe('endpoint URL(s); each trial is POSTed as JSON'),
  }),
]);

/** The spec as validated; durations are in ms. */
export const experimentSpecSchema = z.strictObject({
  name: z
    .string()
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9_-]*$/,
      'letters, digits, _ and - only, starting with a letter or digit',
    )
    .max(100)
    .describe('experiment name, unique in its store'),
  objective: z
    .strictObject({
      metric: z
        .string()
        .min(1)
        .default('value')
        .describe('metric a trial reports (default: value)'),
      direction: z.enum(['minimize', 'maximize']).default('minimize'),
    })
    .default({ metric: 'value', direction: 'minimize' }),
  space: spaceSchema.describe('parameters: name → { type: float|int|categorical, ... }'),
  sampler: z
    .strictObject({
      name: z.enum(SAMPLERS).default('tpe'),
      seed: z.number().int().optional().describe('seed of every draw (default: 0)'),
      options: z.record(z.string(), z.unknown()).default({}),
    })
    .default({ name: 'tpe', options: {} }),
  pruner: z
    .strictObject({
      name: z.enum(PRUNERS).default('none'),
      options: z.record(z.string(), z.unknown()).default({}),
    })
    .default({ name: 'none', options: {} }),
  maxTrials: z.number().int().positive().describe('trials to finish (complete, pruned or failed)'),
  concurrency: z
    .number()
    .int()
    .positive()
    .default(2)
    .describe('trials in flight at once (default: 2)'),
  trialTimeout: duration.optional().describe('wall-clock limit of one trial attempt, e.g. 30m'),
  maxRetries: z
    .number()
    .int()
    .nonnegative()
    .default(2)
    .describe('retries of a trial whose worker died or whose runner failed (default: 2)'),
  lease: duration
    .default(30_000)
    .describe(
      'time a silent worker keeps a trial before it goes to another worker, e.g. 30s (default: 30s; live workers extend it)',
    ),
  budget: z
    .strictObject({
      maxSteps: z.number().int().positive().describe('largest step (e.g. epochs) a trial runs to'),
    })
    .optional(),
  runner: runnerSchema.optional().describe('how workers run a trial; needed by local workers'),
});
export type ExperimentSpec = z.output<typeof experimentSpecSchema>;
export type ExperimentSpecInput = z.input<typeof experimentSpecSchema>;

function issueText(error: z.ZodError, where: string): string {
  const issue = error.issues[0];
  const path = issue?.path.length ? issue.path.join('.') : '(root)';
  return `${where}: "${path}": ${issue?.message ?? 'invalid'}`;
}

/**
 * Validates a spec object; `where` names its source in errors. Also validates the space
 * (every parameter), so a bad spec fails before anything runs.
 */
export function parseExperimentSpec(input: unknown, where = 'experiment spec'): ExperimentSpec {
  const parsed = experimentSpecSchema.safeParse(input);
  if (!parsed.success) throw new InputError(issueText(parsed.error, where));
  const space = SearchSpace.parse(parsed.data.space, `${where}: space`);
  const runner = parsed.data.runner;
  if (runner && 'exec' in runner) checkTemplate(runner.exec, space, where);
  return parsed.data;
}

/**
 * Refuses a `{name}` placeholder without default that names a conditional parameter: in trials
 * where its condition does not hold the parameter is absent, and the command would get the
 * placeholder's text.
 */
function checkTemplate(template: string, space: SearchSpace, where: string): void {
  for (const { name, fallback } of placeholdersOf(template)) {
    if (fallback !== undefined || space.get(name)?.when === undefined) continue;
    throw new InputError(
      `${where}: "runner.exec": placeholder {${name}} names the conditional parameter "${name}", which trials where its condition does not hold lack: give it a default, e.g. {${name}:-0} ({${name}:-} for nothing)`,
    );
  }
}

/**
 * The spec with its runner made independent of where the spec file was: a module path
 * becomes absolute and an exec command gets its working directory (`dir`, the spec file's
 * folder, unless it names one). The stored spec is this form, so workers started on resume
 * find the same files.
 */
export function anchorRunner(spec: ExperimentSpec, dir: string): ExperimentSpec {
  const runner = spec.runner;
  if (!runner || 'http' in runner) return spec;
  if ('module' in runner) return { ...spec, runner: { module: resolve(dir, runner.module) } };
  return { ...spec, runner: { ...runner, cwd: resolve(dir, runner.cwd ?? '.') } };
}

/** Reads a spec file, YAML (`.yaml`, `.yml`) or JSON, validates it and anchors its runner there. */
export function loadExperimentSpec(path: string): ExperimentSpec {
  let text: string;
  try {
    const bytes = statSync(path).size;
    if (bytes > MAX_SPEC_BYTES) {
      throw new InputError(
        `spec "${path}": the file is ${bytes} bytes; the limit is ${MAX_SPEC_BYTES} (16 MiB): is a categorical parameter listing more than ${MAX_CHOICES} choices?`,
      );
    }
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`spec "${path}": cannot read it: ${(err as Error).message}`, {
      cause: err,
    });
  }
  let data: unknown;
  if (extname(path).toLowerCase() === '.json') {
    try {
      data = JSON.parse(text);
    } catch (err) {
      throw new InputError(`spec "${path}": not valid JSON: ${(err as Error).message}`, {
        cause: err,
      });
    }
  } else {
    const doc = parseDocument(text, { prettyErrors: true });
    const first = doc.errors[0];
    if (first) {
      const line = first.linePos?.[0].line;
      throw new InputError(
        `spec "${path}"${line !== undefined ? ` line ${line}` : ''}: not valid YAML: ${first.message.split('\n')[0]}`,
      );
    }
    data = doc.toJS();
  }
  return anchorRunner(parseExperimentSpec(data, `spec "${path}"`), dirname(resolve(path)));
}

/** The JSON Schema of a spec file (for editors), generated from the zod schema. */
export function experimentSpecJsonSchema(): Record<string, unknown> {
  return {
    title: 'qtune experiment spec',
    ...z.toJSONSchema(experimentSpecSchema, { io: 'input', unrepresentable: 'any' }),
  };
}
