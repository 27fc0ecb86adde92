/**
 * The three ways a worker runs a trial, reusing the task handlers: a JS module, a command in
 * any language, an HTTP endpoint pool.
 */
import { ErrorCode, TaskError } from '../../protocol/errors.js';
import { runCommand } from '../handlers/exec.js';
import { httpPoolHandler } from '../handlers/http-pool.js';
import { loadModuleFunction } from '../handlers/module.js';
import { fillCommand } from './placeholders.js';
import type { TrialMetrics, TrialRun } from './trial-handler.js';

export { fillCommand };

/** Prefix of a stdout line carrying an intermediate report: `QTUNE_REPORT {"step": 3, "loss": 0.41}`. */
export const REPORT_PREFIX = 'QTUNE_REPORT ';
/** Prefix of the stdout line carrying the final metrics: `QTUNE_RESULT {"loss": 0.38}` or `QTUNE_RESULT 0.38`. */
export const RESULT_PREFIX = 'QTUNE_RESULT ';

/** A module whose default export is `async (params, trial) => value | metrics`. */
export async function moduleTrialRun(path: string): Promise<TrialRun> {
  const fn = await loadModuleFunction(path, '(params, trial) => value');
  return async (trial) => (await fn(trial.params, trial)) as TrialMetrics;
}

function parseMetricsJson(text: string, where: string): TrialMetrics {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new TaskError(ErrorCode.BadInput, `${where}: not JSON: ${text.slice(0, 200)}`, {
      retry: false,
    });
  }
  if (
    typeof data === 'number' ||
    (data !== null && typeof data === 'object' && !Array.isArray(data))
  ) {
    return data as TrialMetrics;
  }
  throw new TaskError(
    ErrorCode.BadInput,
    `${where}: expected a number or an object, got ${text.slice(0, 200)}`,
    {
      retry: false,
    },
  );
}

/**
 * A shell command per trial, from a template with `{name}` placeholders. The command sees
 * QTUNE_PARAMS (the params as JSON), QTUNE_TRIAL, QTUNE_EXPERIMENT and, with a budget,
 * QTUNE_MAX_STEPS; the params JSON is also on its stdin. It prints
 * `QTUNE_REPORT {"step": N, "<metric>": V, ...}` lines as it goes and one
 * `QTUNE_RESULT {...}` (or a bare number) at the end; other output is ignored. When told to
 * stop before its result line, its process group gets SIGTERM; once the result line is read,
 * the trial is complete whatever decision arrives after. A non-zero exit fails the attempt with the end of stderr.
 */
export function execTrialRun(template: string, options: { cwd?: string } = {}): TrialRun {
  return async (trial, ctx) => {
    const command = fillCommand(template, trial.params);
    let result: TrialMetrics | undefined;
    let lineError: Error | undefined;
    let reports = Promise.resolve();
    const onStdoutLine = (line: string): void => {
      if (line.startsWith(RESULT_PREFIX)) {
        try {
          result = parseMetricsJson(
            line.slice(RESULT_PREFIX.length),
            `trial ${trial.number}: ${RESULT_PREFIX.trim()} line`,
          );
          // The result is in: a stop decision arriving from now on no longer prunes the trial.
          trial.final(result);
        } catch (err) {
          lineError ??= err as Error;
        }
      } else if (line.startsWith(REPORT_PREFIX)) {
        const where = `trial ${trial.number}: ${REPORT_PREFIX.trim()} line`;
        let metrics: TrialMetrics;
        try {
          metrics = parseMetricsJson(line.slice(REPORT_PREFIX.length), where);
        } catch (err) {
          lineError ??= err as Error;
          return;
        }
        const step = typeof metrics === 'object' ? metrics.step : undefined;
        if (typeof step !== 'number') {
          lineError ??= new TaskError(
            ErrorCode.BadInput,
            `${where}: needs a "step" number: ${line.slice(0, 200)}`,
            {
              retry: false,
            },
          );
          return;
        }
        const { step: _step, ...rest } = metrics as Record<string, unknown>;
        reports = reports
          .then(() => trial.report(step, rest).then(() => undefined))
          .catch((err: Error) => {
            lineError ??= err;
          });
      }
    };
    const env: Record<string, string> = {
      QTUNE_PARAMS: JSON.stringify(trial.params),
      QTUNE_TRIAL: String(trial.number),
      QTUNE_EXPERIMENT: trial.experiment,
      ...(trial.maxSteps !== undefined && { QTUNE_MAX_STEPS: String(trial.maxSteps) }),
    };
    await runCommand(command, trial.params, ctx, {
      env,
      onStdoutLine,
      ...(options.cwd !== undefined && { cwd: options.cwd }),
    });
    await reports;
    if (lineError) throw lineError;
    if (result === undefined) {
      throw new TaskError(
        ErrorCode.HandlerFailed,
        `trial ${trial.number}: command "${command}" exited 0 without printing a "${RESULT_PREFIX.trim()} <json>" line`,
        { retry: false },
      );
    }
    return result;
  };
}

/**
 * An HTTP endpoint pool: each trial is POSTed as `{ experiment, trial, params, maxSteps }`
 * and the JSON response is its final metrics. Endpoints cannot report intermediate values.
 */
export function httpTrialRun(urls: readonly string[]): TrialRun {
  const post = httpPoolHandler([...urls]);
  return async (trial, ctx) =>
    (await post(
      {
        experiment: trial.experiment,
        trial: trial.number,
        params: trial.params,
        ...(trial.maxSteps !== undefined && { maxSteps: trial.maxSteps }),
      },
      ctx,
    )) as TrialMetrics;
}
