/**
 * The AutoML trial messages on the wire (docs/protocol.md, "Trials"): the task a scheduler
 * publishes for each trial, the intermediate reports a running trial sends back as requests,
 * the scheduler's answer, and the value a trial's result carries.
 */
import { z } from 'zod';

/** Task name of a trial task. */
export const TRIAL_TASK = 'qtune.trial';

/** Queue names of an experiment: trials, their results, intermediate reports. */
export function experimentQueues(experiment: string): {
  trials: string;
  results: string;
  reports: string;
  dead: string;
} {
  const trials = `qtune.exp.${experiment}`;
  return {
    trials,
    results: `${trials}.results`,
    reports: `${trials}.reports`,
    dead: `${trials}.dead`,
  };
}

const paramValue = z.union([z.number(), z.string(), z.boolean()]);

/** Payload of a trial task. */
export const trialTaskSchema = z.looseObject({
  experiment: z.string(),
  /** 0-based trial number, unique in the experiment. */
  trial: z.number().int().nonnegative(),
  params: z.record(z.string(), paramValue),
  /** Name of the objective metric (e.g. "loss"). */
  metric: z.string(),
  /** Queue that takes intermediate reports as requests. */
  reportTo: z.string(),
  budget: z
    .looseObject({
      /** Largest step (resource, e.g. epochs) the trial should run to. */
      maxSteps: z.number().int().positive().optional(),
      /** Wall-clock limit of one attempt, in ms. */
      timeoutMs: z.number().int().positive().optional(),
    })
    .optional(),
});
export type TrialTask = z.infer<typeof trialTaskSchema>;

/** Payload of a report request: trial `trial` reached `step` with `value` of the objective metric. */
export const trialReportSchema = z.looseObject({
  experiment: z.string(),
  trial: z.number().int().nonnegative(),
  step: z.number().int().positive(),
  value: z.number(),
  metrics: z.record(z.string(), z.unknown()).optional(),
});
export type TrialReport = z.infer<typeof trialReportSchema>;

/**
 * The scheduler's answer to a report: `continue`, `prune` (the pruner stops the trial) or
 * `stop` (the experiment is stopping, or the trial is no longer running).
 */
export const TrialDecision = {
  Continue: 'continue',
  Prune: 'prune',
  Stop: 'stop',
} as const;
export type TrialDecision = (typeof TrialDecision)[keyof typeof TrialDecision];

export const trialDecisionSchema = z.looseObject({
  decision: z.enum([TrialDecision.Continue, TrialDecision.Prune, TrialDecision.Stop]),
});

/** Value of a trial task's successful result. */
export const trialOutcomeSchema = z.discriminatedUnion('state', [
  z.looseObject({
    state: z.literal('complete'),
    value: z.number(),
    metrics: z.record(z.string(), z.unknown()).optional(),
  }),
  z.looseObject({
    /** Stopped early: by the pruner, or because the experiment stopped. */
    state: z.literal('pruned'),
    step: z.number().int().positive().optional(),
    value: z.number().optional(),
  }),
]);
export type TrialOutcome = z.infer<typeof trialOutcomeSchema>;

/**
 * The objective value in `metrics`: a plain number is the value itself; an object must hold
 * `metric` as a finite number. Returns undefined when it does not.
 */
export function objectiveOf(metrics: unknown, metric: string): number | undefined {
  if (typeof metrics === 'number') return Number.isFinite(metrics) ? metrics : undefined;
  if (metrics !== null && typeof metrics === 'object') {
    const v = (metrics as Record<string, unknown>)[metric];
    if (typeof v === 'number' && Number.isFinite(v)) return v;
  }
  return undefined;
}
