/**
 * Runs AutoML trials as worker tasks. A trial task (src/protocol/trial.ts) is run by a
 * {@link TrialRun} — a JS module, a command, or an HTTP endpoint — which reports
 * intermediate metrics through {@link Trial.report}; each report is a request to the
 * scheduler, whose answer tells the trial to continue or stop. The handler's result is a
 * trial outcome: `{ state: 'complete', value, metrics }` or `{ state: 'pruned', step, value }`.
 */
import type { Requester } from '../../patterns/request-reply.js';
import { DecodeError, ErrorCode, TaskError, toError } from '../../protocol/errors.js';
import {
  objectiveOf,
  trialDecisionSchema,
  TrialDecision,
  trialTaskSchema,
  type TrialOutcome,
  type TrialTask,
} from '../../protocol/trial.js';
import type { TaskGpu } from '../../protocol/result.js';
import type { Logger } from '../logger.js';
import type { TaskContext, TaskHandler } from '../handlers/types.js';

/** Metrics a trial reports or returns: the objective value itself, or an object holding it. */
export type TrialMetrics = number | Record<string, unknown>;

/** What a running trial knows and how it talks to the scheduler. */
export interface Trial {
  readonly experiment: string;
  /** Trial number in the experiment. */
  readonly number: number;
  readonly params: TrialTask['params'];
  /** Largest step to run to, when the experiment sets a budget. */
  readonly maxSteps?: number;
  /** 1 on the first attempt. */
  readonly attempt: number;
  /** Fires when the trial must stop: pruned, timed out, or the worker is shutting down. */
  readonly signal: AbortSignal;
  /**
   * The GPU this trial holds on a worker with GPU slots (`--gpus`); no other task of the worker
   * runs on it meanwhile. Absent on a worker without GPU slots.
   */
  readonly gpu?: TaskGpu;
  /** True once the scheduler said to stop. */
  readonly shouldStop: boolean;
  /**
   * Reports `metrics` at `step` (≥ 1, e.g. the epoch); resolves true when the trial should
   * stop now (pruned, or the experiment is stopping). If the scheduler cannot be reached in
   * time the trial goes on (resolves false).
   */
  report(step: number, metrics: TrialMetrics): Promise<boolean>;
  /**
   * Declares the trial's final metrics before the run returns (a command's `QTUNE_RESULT`
   * line). From then on the trial ends complete with them: a stop decision that arrives after
   * the result, or races with it, no longer makes it pruned nor stops the run.
   */
  final(metrics: TrialMetrics): void;
  readonly log: Logger;
}

/** Runs one trial; resolves with its final metrics. */
export type TrialRun = (trial: Trial, ctx: TaskContext) => Promise<TrialMetrics>;

export interface TrialHandlerOptions {
  /** Sends reports to the scheduler; without one, reports are recorded nowhere and never stop the trial. */
  requester?: Requester;
  /** Time to wait for the scheduler's answer to a report, in ms (default: 10000). */
  reportTimeoutMs?: number;
}

/** Why a trial's signal fired, kept as the abort reason. */
class TrialStopped extends Error {
  constructor(readonly why: 'pruned' | 'timeout') {
    super(why === 'pruned' ? 'trial stopped by the scheduler' : 'trial exceeded its time budget');
  }
}

/** A task handler that runs trial tasks with `run`. */
export function trialHandler(run: TrialRun, options: TrialHandlerOptions = {}): TaskHandler {
  const reportTimeoutMs = options.reportTimeoutMs ?? 10_000;
  return async (payload, ctx) => {
    const parsed = trialTaskSchema.safeParse(payload);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new DecodeError(
        ErrorCode.InvalidEnvelope,
        `task ${ctx.taskId}: not a trial task: "payload.${issue?.path.join('.') ?? ''}": ${issue?.message ?? 'invalid'}`,
      );
    }
    const task = parsed.data;
    const stopper = new AbortController();
    const signal = AbortSignal.any([ctx.signal, stopper.signal]);
    let last: { step: number; value: number } | undefined;
    let stopped = false;
    /** The final metrics once the run declared them: a result that arrived wins over a stop. */
    let final: TrialMetrics | undefined;
    const timeoutMs = task.budget?.timeoutMs;
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(() => stopper.abort(new TrialStopped('timeout')), timeoutMs);
    timer?.unref();

    const trial: Trial = {
      experiment: task.experiment,
      number: task.trial,
      params: task.params,
      ...(task.budget?.maxSteps !== undefined && { maxSteps: task.budget.maxSteps }),
      attempt: ctx.attempt,
      signal,
      ...(ctx.gpu !== undefined && { gpu: ctx.gpu }),
      log: ctx.log,
      get shouldStop() {
        return stopped;
      },
      async report(step, metrics) {
        if (!Number.isInteger(step) || step < 1) {
          throw new TaskError(
            ErrorCode.BadInput,
            `trial ${task.trial}: report step must be an integer ≥ 1, got ${step}`,
            {
              retry: false,
            },
          );
        }
        const value = objectiveOf(metrics, task.metric);
        if (value === undefined) {
          throw new TaskError(
            ErrorCode.BadInput,
            `trial ${task.trial}: report at step ${step} has no finite "${task.metric}": ${JSON.stringify(metrics)}`,
            { retry: false },
          );
        }
        last = { step, value };
        if (stopped) return true;
        if (!options.requester) return false;
        ctx.heartbeat().catch(() => {});
        let decision: string;
        try {
          const reply = await options.requester.request(
            task.reportTo,
            {
              experiment: task.experiment,
              trial: task.trial,
              step,
              value,
              ...(typeof metrics === 'object' && { metrics }),
            },
            { timeoutMs: reportTimeoutMs, signal: ctx.signal },
          );
          decision = trialDecisionSchema.parse(reply).decision;
        } catch (err) {
          ctx.log.warn(
            { err: toError(err).message, trial: task.trial, step },
            'report not answered; going on',
          );
          return false;
        }
        if (decision === TrialDecision.Continue) return false;
        stopped = true;
        if (final === undefined) stopper.abort(new TrialStopped('pruned'));
        return true;
      },
      final(metrics) {
        final = metrics;
      },
    };

    const pruned = (): TrialOutcome => ({
      state: 'pruned',
      ...(last !== undefined && { step: last.step, value: last.value }),
    });
    const complete = (metrics: TrialMetrics): TrialOutcome => {
      const value = objectiveOf(metrics, task.metric);
      if (value === undefined) {
        throw new TaskError(
          ErrorCode.HandlerFailed,
          `trial ${task.trial}: result has no finite "${task.metric}": ${JSON.stringify(metrics)?.slice(0, 200)}`,
          { retry: false },
        );
      }
      return { state: 'complete', value, ...(typeof metrics === 'object' && { metrics }) };
    };
    const timedOut = (): boolean => {
      const reason: unknown = stopper.signal.reason;
      return reason instanceof TrialStopped && reason.why === 'timeout';
    };
    try {
      const metrics = await run(trial, { ...ctx, signal });
      if (final !== undefined) return complete(final);
      if (stopped) return pruned();
      if (timedOut()) throw stopper.signal.reason as Error;
      return complete(metrics);
    } catch (err) {
      // The run was stopped (pruned, timed out) after its result arrived: the result wins.
      if (final !== undefined && (stopped || timedOut())) return complete(final);
      if (stopped) return pruned();
      if (timedOut()) {
        throw new TaskError(
          ErrorCode.Timeout,
          `trial ${task.trial}: exceeded its time budget of ${timeoutMs} ms`,
          {
            retry: false,
          },
        );
      }
      throw err;
    } finally {
      if (timer) clearTimeout(timer);
    }
  };
}
