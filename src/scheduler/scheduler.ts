/**
 * The experiment scheduler: keeps up to `concurrency` trials in flight on the experiment's
 * queue, answers running trials' reports with its pruner's decision, records every result,
 * and rebuilds itself from the store after a crash.
 *
 * Every state change is written to the store before it is acted on:
 * - a trial is stored `pending` before its task is published, and `running` after the broker
 *   confirmed the task; on resume, `pending` trials are published again (same task id);
 * - a report is stored (with the decision) before the decision is sent back;
 * - a result is stored before it is acked, and a result for a trial that is already final is
 *   acked without effect, so a redelivered result counts once.
 *
 * State machine of a run: `running` (suggest and publish while below concurrency and
 * maxTrials) → `draining` (no more suggestions: maxTrials reached, the sampler has nothing left,
 * or a stop was asked; wait for in-flight trials) → `done` | `stopped`. `pause()` leaves the
 * experiment `running` in the store for a later resume.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Broker, Consumer, Delivery } from '../broker/contract.js';
import { DEAD_LETTER_REASON_HEADER, declareQueueOrKeep } from '../broker/contract.js';
import type { FinishedTrial, PendingTrial, Pruner, Sampler } from '../automl/contract.js';
import { SearchSpace } from '../automl/space.js';
import { publishEvent } from '../patterns/pubsub.js';
import { decodeRequest, pastDeadline, sendReply } from '../patterns/request-reply.js';
import { consumeResults, submitTasks } from '../patterns/work-queue.js';
import { decode } from '../protocol/codec.js';
import { ErrorCode, InputError, toError } from '../protocol/errors.js';
import type { TaskResult } from '../protocol/result.js';
import {
  experimentQueues,
  objectiveOf,
  TRIAL_TASK,
  TrialDecision,
  trialOutcomeSchema,
  trialReportSchema,
  trialTaskSchema,
  type TrialTask,
} from '../protocol/trial.js';
import type {
  ExperimentStore,
  TrialCounts,
  TrialFinish,
  TrialRecord,
} from '../store/experiments.js';
import type { Store } from '../store/contract.js';
import { findExperiment, parseStoredSpec } from './stored.js';
import { createPruner, createSampler } from './search.js';
import type { ExperimentSpec } from './spec.js';

/** What a spec builds: its space, sampler and pruner. */
export interface ExperimentParts {
  space: SearchSpace;
  sampler: Sampler;
  pruner: Pruner;
}

/**
 * Builds everything a spec names (space, sampler, pruner) and so validates it whole; throws
 * `InputError` naming what is wrong. The scheduler calls it before it stores anything, so a
 * spec that a sampler or pruner rejects leaves no experiment behind.
 */
export function buildExperiment(spec: ExperimentSpec): ExperimentParts {
  const space = SearchSpace.parse(spec.space, 'space');
  return { space, sampler: createSampler(space, spec), pruner: createPruner(spec) };
}

/** Lease of the result, report and dead-trial queues, in ms: how soon a crashed scheduler's unsettled messages come back. */
export const SCHEDULER_LEASE_MS = 3_000;

/** Topic of an experiment's trial events: `qtune.experiment.<name>.trial.<event>`. */
export function experimentTopic(experiment: string, event: string): string {
  return `qtune.experiment.${experiment}.trial.${event}`;
}

/** What a trial event carries. */
export interface TrialEvent {
  experiment: string;
  number: number;
  params?: Record<string, number | string | boolean>;
  value?: number;
  step?: number;
  decision?: string;
  error?: string;
}

export interface SchedulerSummary {
  experiment: string;
  status: 'done' | 'stopped' | 'paused';
  counts: TrialCounts;
  best?: { number: number; value: number; params: Record<string, number | string | boolean> };
}

/** Typed events of a {@link Scheduler}. */
export interface SchedulerEvents {
  'trial:started': (e: TrialEvent) => void;
  'trial:reported': (e: TrialEvent) => void;
  'trial:completed': (e: TrialEvent) => void;
  'trial:pruned': (e: TrialEvent) => void;
  'trial:failed': (e: TrialEvent) => void;
  /** Something went wrong outside any trial's fate (a publish or store write failed). */
  error: (error: Error) => void;
}

export interface SchedulerOptions {
  broker: Broker;
  /** Where the experiment, its trials and its history are kept (its `experiments` part). */
  store: Store;
  /** The spec for a new experiment; on resume, the stored spec is used and this is ignored. */
  spec?: ExperimentSpec;
  /** Name of the experiment to resume (required when `spec` is absent). */
  resume?: string;
  /** How often the store is checked for a stop request, in ms (default: 250). */
  stopPollMs?: number;
  /** Publish trial events on the experiment's topic (default: true). */
  publishEvents?: boolean;
}

interface InFlight {
  number: number;
  params: Record<string, number | string | boolean>;
  taskId: string;
}

/** Runs one experiment; create with {@link Scheduler.start}, await {@link Scheduler.done}. */
export class Scheduler {
  readonly #events = new EventEmitter();
  readonly spec: ExperimentSpec;
  readonly #broker: Broker;
  readonly #store: ExperimentStore;
  readonly #queues: ReturnType<typeof experimentQueues>;
  readonly #sampler: Sampler;
  readonly #pruner: Pruner;
  readonly #sign: 1 | -1;
  readonly #publishEvents: boolean;
  readonly #stopPollMs: number;
  readonly #inFlight = new Map<number, InFlight>();
  readonly #params = new Map<number, Record<string, number | string | boolean>>();
  readonly #reported = new Set<string>();
  #next = 0;
  #exhausted = false;
  #stopping = false;
  #finished = false;
  #best: SchedulerSummary['best'];
  #consumers: Consumer[] = [];
  #stopTimer: NodeJS.Timeout | undefined;
  #filling: Promise<void> = Promise.resolve();
  #resolveDone!: (s: SchedulerSummary) => void;
  #rejectDone!: (e: Error) => void;
  /** Resolves when the experiment is done, stopped or paused. */
  readonly done: Promise<SchedulerSummary>;

  private constructor(options: SchedulerOptions, spec: ExperimentSpec, parts: ExperimentParts) {
    this.spec = spec;
    this.#broker = options.broker;
    this.#store = options.store.experiments;
    this.#queues = experimentQueues(spec.name);
    this.#sampler = parts.sampler;
    this.#pruner = parts.pruner;
    this.#sign = spec.objective.direction === 'maximize' ? -1 : 1;
    this.#publishEvents = options.publishEvents ?? true;
    this.#stopPollMs = options.stopPollMs ?? 250;
    this.done = new Promise((resolve, reject) => {
      this.#resolveDone = resolve;
      this.#rejectDone = reject;
    });
    // A caller that only listens to events must not crash the process on a rejection here.
    this.done.catch(() => {});
  }

  /**
   * Creates the experiment (or loads it, to resume), rebuilds sampler and pruner from its
   * history, re-publishes trials whose publish was not confirmed, and starts scheduling.
   */
  static async start(options: SchedulerOptions): Promise<Scheduler> {
    const store = options.store.experiments;
    // Everything the spec names is built before anything is stored: a spec that the sampler or
    // pruner rejects must not leave an experiment behind.
    let spec: ExperimentSpec;
    let parts: ExperimentParts;
    if (options.resume !== undefined) {
      const exp = await findExperiment(store, options.resume);
      spec = parseStoredSpec(exp);
      parts = buildExperiment(spec);
      if (exp.status !== 'done') await store.setExperimentStatus(exp.name, 'running');
    } else {
      if (!options.spec)
        throw new InputError('Scheduler.start needs a spec or an experiment to resume');
      spec = options.spec;
      parts = buildExperiment(spec);
      if (await store.getExperiment(spec.name)) {
        throw new InputError(
          `experiment "${spec.name}" already exists: resume it with \`qtune experiment resume ${spec.name}\`, or choose another name`,
        );
      }
      await store.createExperiment(spec.name, spec);
    }
    const scheduler = new Scheduler(options, spec, parts);
    await scheduler.#rebuild();
    await scheduler.#begin();
    return scheduler;
  }

  on<E extends keyof SchedulerEvents>(event: E, listener: SchedulerEvents[E]): this {
    this.#events.on(event, listener);
    return this;
  }

  once<E extends keyof SchedulerEvents>(event: E, listener: SchedulerEvents[E]): this {
    this.#events.once(event, listener);
    return this;
  }

  off<E extends keyof SchedulerEvents>(event: E, listener: SchedulerEvents[E]): this {
    this.#events.off(event, listener);
    return this;
  }

  /** Emits an event; an 'error' nobody listens to is dropped rather than thrown. */
  #emit<E extends keyof SchedulerEvents>(event: E, ...args: Parameters<SchedulerEvents[E]>): void {
    if (event === 'error' && this.#events.listenerCount('error') === 0) return;
    this.#events.emit(event, ...args);
  }

  /** Trials in flight now. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Best finished trial so far (in the objective's own direction). */
  get best(): SchedulerSummary['best'] {
    return this.#best;
  }

  /** Replays the stored history into the sampler and pruner, and reloads unfinished trials. */
  async #rebuild(): Promise<void> {
    const name = this.spec.name;
    const trials = await this.#store.listTrials(name);
    for (const t of trials) {
      this.#params.set(t.number, t.params);
      this.#next = Math.max(this.#next, t.number + 1);
      if (t.status === 'pending' || t.status === 'running') {
        this.#inFlight.set(t.number, { number: t.number, params: t.params, taskId: t.taskId });
      } else if (t.status === 'complete' && t.value !== undefined) {
        this.#noteBest(t.number, t.value);
      }
    }
    for (const h of await this.#store.history(name)) {
      if (h.kind === 'report') {
        this.#reported.add(`${h.number}:${h.step}`);
        this.#pruner.report(h.number, h.step, this.#sign * h.value);
      } else {
        this.#tell({
          number: h.number,
          params: this.#params.get(h.number) ?? {},
          state: h.status,
          ...(h.value !== undefined && h.status !== 'failed' && { value: this.#sign * h.value }),
          ...(h.step !== undefined && { step: h.step }),
        });
      }
    }
    const pending = trials.filter((t) => t.status === 'pending');
    if (pending.length > 0) {
      await this.#declare();
      await this.#publishTrials(pending);
    }
  }

  #tell(trial: FinishedTrial): void {
    this.#sampler.tell(trial);
    this.#pruner.tell(trial);
  }

  #noteBest(number: number, value: number): void {
    if (this.#best === undefined || this.#sign * value < this.#sign * this.#best.value) {
      this.#best = { number, value, params: this.#params.get(number) ?? {} };
    }
  }

  #declared = false;
  async #declare(): Promise<void> {
    if (this.#declared) return;
    const q = this.#queues;
    // A worker may have declared the trial queue first, with its own lease: it stays.
    await declareQueueOrKeep(this.#broker, q.trials, {
      maxDeliveries: this.spec.maxRetries + 1,
      leaseMs: this.spec.lease,
    });
    // Only this scheduler consumes results, reports and dead trials, and it settles each within
    // milliseconds: a short lease brings back what a crashed scheduler held, for its successor.
    // Workers started first may have made them with their defaults: those stay.
    for (const queue of [q.results, q.reports, q.dead]) {
      await declareQueueOrKeep(this.#broker, queue, { leaseMs: SCHEDULER_LEASE_MS });
    }
    this.#declared = true;
  }

  async #begin(): Promise<void> {
    await this.#declare();
    const q = this.#queues;
    const prefetch = Math.max(16, this.spec.concurrency * 2);
    this.#consumers.push(
      await consumeResults(this.#broker, q.trials, (result) => this.#onResult(result), {
        resultQueue: q.results,
        prefetch,
      }),
      await this.#broker.consume(q.dead, (d) => this.#onDead(d), { prefetch: 16 }),
      await this.#broker.consume(q.reports, (d) => this.#onReport(d), { prefetch }),
    );
    this.#stopTimer = setInterval(() => void this.#pollStop(), this.#stopPollMs);
    this.#stopTimer.unref();
    if ((await this.#store.experimentStatus(this.spec.name)) === 'stopping') this.#stopping = true;
    this.#kick();
  }

  async #pollStop(): Promise<void> {
    if (this.#stopping || this.#finished) return;
    try {
      // The status alone: the spec was parsed once, at start.
      if ((await this.#store.experimentStatus(this.spec.name)) === 'stopping') {
        this.#stopping = true;
        this.#kick();
      }
    } catch (err) {
      this.#emit('error', toError(err));
    }
  }

  /** Stops suggesting; running trials are told to stop at their next report. Resolves `done` once none is in flight. */
  async stop(): Promise<SchedulerSummary> {
    if (!this.#finished) {
      await this.#store.setExperimentStatus(this.spec.name, 'stopping');
      this.#stopping = true;
      this.#kick();
    }
    return this.done;
  }

  /**
   * Stops scheduling at once and leaves the experiment resumable: nothing in flight is
   * touched (its tasks stay on the queue, its results wait for the resumed scheduler).
   */
  async pause(): Promise<SchedulerSummary> {
    if (!this.#finished) await this.#finish('paused');
    return this.done;
  }

  /** Serializes fills: one at a time, in order. */
  #kick(): void {
    this.#filling = this.#filling.then(() => this.#fill()).catch((err) => this.#fail(toError(err)));
  }

  async #fill(): Promise<void> {
    if (this.#finished) return;
    const created: TrialRecord[] = [];
    while (
      !this.#stopping &&
      !this.#exhausted &&
      this.#next < this.spec.maxTrials &&
      this.#inFlight.size < this.spec.concurrency
    ) {
      const number = this.#next;
      const running: PendingTrial[] = [...this.#inFlight.values()].map((t) => ({
        number: t.number,
        params: t.params,
      }));
      const params = this.#sampler.suggest(number, running);
      if (params === null) {
        this.#exhausted = true;
        break;
      }
      const taskId = randomUUID();
      const createdAt = Date.now();
      await this.#store.addTrial({ experiment: this.spec.name, number, params, taskId, createdAt });
      this.#next = number + 1;
      this.#params.set(number, params);
      this.#inFlight.set(number, { number, params, taskId });
      created.push({
        experiment: this.spec.name,
        number,
        params,
        taskId,
        status: 'pending',
        createdAt,
      });
    }
    if (created.length > 0) {
      await this.#publishTrials(created);
      for (const t of created) {
        this.#event('trial:started', 'started', {
          experiment: this.spec.name,
          number: t.number,
          params: t.params,
        });
      }
    }
    if (
      this.#inFlight.size === 0 &&
      (this.#stopping || this.#exhausted || this.#next >= this.spec.maxTrials)
    ) {
      await this.#finish(this.#stopping ? 'stopped' : 'done');
    }
  }

  async #publishTrials(trials: readonly TrialRecord[]): Promise<void> {
    const { budget, trialTimeout } = this.spec;
    await submitTasks<TrialTask>(
      this.#broker,
      this.#queues.trials,
      trials.map((t) => ({
        id: t.taskId,
        key: `${this.spec.name}#${t.number}`,
        task: TRIAL_TASK,
        payload: {
          experiment: this.spec.name,
          trial: t.number,
          params: t.params,
          metric: this.spec.objective.metric,
          reportTo: this.#queues.reports,
          ...((budget?.maxSteps !== undefined || trialTimeout !== undefined) && {
            budget: {
              ...(budget?.maxSteps !== undefined && { maxSteps: budget.maxSteps }),
              ...(trialTimeout !== undefined && { timeoutMs: trialTimeout }),
            },
          }),
        },
      })),
      { declare: false, replyTo: this.#queues.results },
    );
    await this.#store.markRunning(
      this.spec.name,
      trials.map((t) => t.number),
    );
  }

  /** The trial number a result or task belongs to, from its key `<experiment>#<number>`. */
  #numberOf(key: string | undefined): number | undefined {
    if (key === undefined) return undefined;
    const prefix = `${this.spec.name}#`;
    if (!key.startsWith(prefix)) return undefined;
    const n = Number(key.slice(prefix.length));
    return Number.isInteger(n) && n >= 0 ? n : undefined;
  }

  async #onResult(result: TaskResult): Promise<void> {
    const number = this.#numberOf(result.key);
    if (number === undefined) return; // not one of ours: acked and ignored
    const base = {
      attempt: result.attempt,
      worker: {
        host: result.worker.host,
        pid: result.worker.pid,
        ...(result.worker.gpus && { gpus: result.worker.gpus }),
      },
      startedAt: result.startedAt,
      finishedAt: result.finishedAt,
    };
    let finish: TrialFinish;
    if (!result.ok) {
      finish = {
        ...base,
        status: 'failed',
        error: `${result.error?.code ?? ErrorCode.HandlerFailed}: ${result.error?.message ?? 'failed'}`,
      };
    } else {
      const outcome = trialOutcomeSchema.safeParse(result.value);
      const value = outcome.success
        ? undefined
        : objectiveOf(result.value, this.spec.objective.metric);
      if (outcome.success && outcome.data.state === 'complete') {
        finish = {
          ...base,
          status: 'complete',
          value: outcome.data.value,
          ...(outcome.data.metrics && { metrics: outcome.data.metrics }),
        };
      } else if (outcome.success) {
        finish = {
          ...base,
          status: 'pruned',
          ...(outcome.data.value !== undefined && { value: outcome.data.value }),
          ...(typeof outcome.data.step === 'number' && { step: outcome.data.step }),
        };
      } else if (value !== undefined) {
        // A runner that returned the bare value (or a metrics object) instead of an outcome.
        finish = { ...base, status: 'complete', value };
      } else {
        finish = {
          ...base,
          status: 'failed',
          error: `${ErrorCode.InvalidEnvelope}: result value has no finite "${this.spec.objective.metric}": ${JSON.stringify(result.value)?.slice(0, 200)}`,
        };
      }
    }
    await this.#finishTrial(number, finish);
  }

  async #onDead(delivery: Delivery): Promise<void> {
    let number: number | undefined;
    try {
      const env = decode(delivery.body, { source: `queue "${delivery.queue}"` });
      number = this.#numberOf(env.key);
      if (number === undefined) {
        const task = trialTaskSchema.safeParse(env.payload);
        if (task.success && task.data.experiment === this.spec.name) number = task.data.trial;
      }
    } catch {
      number = undefined;
    }
    if (number !== undefined) {
      const reason = delivery.headers[DEAD_LETTER_REASON_HEADER];
      await this.#finishTrial(number, {
        status: 'failed',
        error: typeof reason === 'string' ? reason : 'dead-lettered',
        attempt: delivery.deliveryCount,
        finishedAt: Date.now(),
      });
    }
    // The dead letter stays inspectable with `qtune dlq` only when it is not one of ours.
    if (number === undefined) await delivery.release();
    else await delivery.ack();
  }

  async #finishTrial(number: number, finish: TrialFinish): Promise<void> {
    if (this.#finished) throw new Error('scheduler is paused');
    if (finish.status === 'pruned' && finish.value === undefined) {
      const last = (await this.#store.getTrial(this.spec.name, number))?.value;
      if (last !== undefined) finish = { ...finish, value: last };
    }
    const changed = await this.#store.finishTrial(this.spec.name, number, finish);
    if (!changed) return;
    const stored = await this.#store.getTrial(this.spec.name, number);
    this.#inFlight.delete(number);
    const value = stored?.value;
    const step = stored?.step;
    this.#tell({
      number,
      params: this.#params.get(number) ?? stored?.params ?? {},
      state: finish.status,
      ...(value !== undefined && finish.status !== 'failed' && { value: this.#sign * value }),
      ...(step !== undefined && { step }),
    });
    const event: TrialEvent = {
      experiment: this.spec.name,
      number,
      ...(value !== undefined && { value }),
      ...(step !== undefined && { step }),
      ...(finish.error !== undefined && { error: finish.error }),
    };
    if (finish.status === 'complete') {
      this.#noteBest(number, value!);
      this.#event('trial:completed', 'completed', event);
    } else if (finish.status === 'pruned') {
      this.#event('trial:pruned', 'pruned', event);
    } else {
      this.#event('trial:failed', 'failed', event);
    }
    this.#kick();
  }

  async #onReport(delivery: Delivery): Promise<void> {
    const request = await decodeRequest(delivery, delivery.queue);
    if (request === undefined) return;
    const parsed = trialReportSchema.safeParse(request.payload);
    if (!parsed.success || parsed.data.experiment !== this.spec.name) {
      const issue = parsed.success ? undefined : parsed.error.issues[0];
      await delivery.deadLetter(
        `${ErrorCode.InvalidEnvelope}: ${
          issue
            ? `report is invalid at "payload.${issue.path.join('.')}": ${issue.message}`
            : `report for another experiment`
        }`,
      );
      return;
    }
    const report = parsed.data;
    let decision: string;
    if (!this.#inFlight.has(report.trial)) {
      decision = TrialDecision.Stop;
    } else {
      const key = `${report.trial}:${report.step}`;
      if (this.#reported.has(key)) {
        decision = (
          await this.#store.recordReport(this.spec.name, {
            number: report.trial,
            step: report.step,
            value: report.value,
            decision: '',
            at: Date.now(),
          })
        ).decision;
      } else {
        decision = this.#stopping
          ? TrialDecision.Stop
          : this.#pruner.report(report.trial, report.step, this.#sign * report.value);
        await this.#store.recordReport(this.spec.name, {
          number: report.trial,
          step: report.step,
          value: report.value,
          ...(report.metrics && { metrics: report.metrics }),
          decision,
          at: Date.now(),
        });
        this.#reported.add(key);
        this.#event('trial:reported', 'reported', {
          experiment: this.spec.name,
          number: report.trial,
          step: report.step,
          value: report.value,
          decision,
        });
      }
    }
    // A report past its deadline is stored all the same, for the pruner; only its reply is moot.
    if (!pastDeadline(request)) {
      // The requester may be gone (its worker died); the decision is stored either way.
      await sendReply(this.#broker, delivery, request, {
        ok: true,
        value: { decision },
      }).catch(() => {});
    }
    await delivery.ack();
  }

  #event(name: keyof SchedulerEvents, topicEvent: string, payload: TrialEvent): void {
    this.#emit(name, payload);
    if (!this.#publishEvents) return;
    publishEvent(this.#broker, experimentTopic(this.spec.name, topicEvent), payload).catch((err) =>
      this.#emit('error', toError(err)),
    );
  }

  async #finish(status: SchedulerSummary['status']): Promise<void> {
    if (this.#finished) return;
    this.#finished = true;
    clearInterval(this.#stopTimer);
    await Promise.all(this.#consumers.map((c) => c.cancel().catch(() => {})));
    if (status !== 'paused') await this.#store.setExperimentStatus(this.spec.name, status);
    const counts = await this.#store.counts(this.spec.name);
    this.#resolveDone({
      experiment: this.spec.name,
      status,
      counts,
      ...(this.#best && { best: this.#best }),
    });
  }

  #fail(error: Error): void {
    this.#emit('error', error);
    if (this.#finished) return;
    this.#finished = true;
    clearInterval(this.#stopTimer);
    void Promise.all(this.#consumers.map((c) => c.cancel().catch(() => {}))).then(() =>
      this.#rejectDone(error),
    );
  }
}
