/**
 * A circuit breaker for one endpoint of an HTTP pool: pure logic with an injected clock, so the
 * pool decides where requests go and the breaker only says whether an endpoint may take one.
 *
 * State machine (per endpoint):
 * - `up` (closed): requests flow. It opens after `failures` consecutive failures, or when the
 *   last `window` outcomes hold at least `minRequests` outcomes of which a share ≥ `failureRate`
 *   failed.
 * - `open`: no requests for `cooldownMs`; outcomes of requests sent before it opened are ignored.
 *   Once the cool-down has passed it is `half-open`.
 * - `half-open`: one probe request at a time. The probe's success closes the breaker with fresh
 *   counts; its failure opens it for another cool-down; a cancelled probe lets another through.
 */

import { InputError } from '../../protocol/errors.js';

/** The states of a {@link CircuitBreaker}. */
export const BreakerState = {
  Up: 'up',
  Open: 'open',
  HalfOpen: 'half-open',
} as const;
export type BreakerState = (typeof BreakerState)[keyof typeof BreakerState];

/** When a breaker opens and how long it stays open. */
export interface BreakerOptions {
  /** Consecutive failures that open the breaker (default: 5). */
  failures?: number;
  /** Share of failed outcomes in the window that opens the breaker, in (0, 1] (default: 0.5). */
  failureRate?: number;
  /** Number of most recent outcomes the failure rate is taken over (default: 20). */
  window?: number;
  /** Outcomes the window must hold before the failure rate can open the breaker (default: 10). */
  minRequests?: number;
  /** How long an open breaker refuses requests before it lets a probe through, in ms (default: 2000). */
  cooldownMs?: number;
}

export const BREAKER_DEFAULTS = {
  failures: 5,
  failureRate: 0.5,
  window: 20,
  minRequests: 10,
  cooldownMs: 2_000,
} as const satisfies Required<BreakerOptions>;

/** Leave to send one request, given by {@link CircuitBreaker.acquire}; settle it exactly once. */
export interface BreakerPermit {
  /** True when this request is the half-open probe. */
  readonly probe: boolean;
  /** The breaker's generation when the permit was given; outcomes of older ones are ignored. */
  readonly generation: number;
}

/** What a breaker reports about itself. */
export interface BreakerSnapshot {
  state: BreakerState;
  /** Failures since the last success. */
  consecutiveFailures: number;
  /** Failed outcomes among `recentRequests`, the outcomes in the rate window. */
  recentFailures: number;
  recentRequests: number;
  /** Times the breaker has opened. */
  opened: number;
  /** While open: the clock time (ms) at which it lets a probe through. */
  retryAt?: number;
  /** Why it last opened, e.g. `5 consecutive failures`. */
  reason?: string;
}

/** A state change, for logs. */
export interface BreakerTransition {
  from: BreakerState;
  to: BreakerState;
  /** Why it opened (only when `to` is `open`). */
  reason?: string;
}

export class CircuitBreaker {
  readonly #failures: number;
  readonly #failureRate: number;
  readonly #windowSize: number;
  readonly #minRequests: number;
  readonly #cooldownMs: number;
  readonly #now: () => number;
  readonly #onTransition: ((t: BreakerTransition) => void) | undefined;
  #state: BreakerState = BreakerState.Up;
  #consecutive = 0;
  /** Ring of the last outcomes in the up state: true = failed. */
  #window: boolean[] = [];
  #windowNext = 0;
  #openedAt = 0;
  #opened = 0;
  #reason: string | undefined;
  #probeInFlight = false;
  /** Bumped on every state change so late outcomes of older requests can be told apart. */
  #generation = 0;

  constructor(
    options: BreakerOptions = {},
    hooks: { now?: () => number; onTransition?: (t: BreakerTransition) => void } = {},
  ) {
    this.#failures = options.failures ?? BREAKER_DEFAULTS.failures;
    this.#failureRate = options.failureRate ?? BREAKER_DEFAULTS.failureRate;
    this.#windowSize = options.window ?? BREAKER_DEFAULTS.window;
    this.#minRequests = options.minRequests ?? BREAKER_DEFAULTS.minRequests;
    this.#cooldownMs = options.cooldownMs ?? BREAKER_DEFAULTS.cooldownMs;
    this.#now = hooks.now ?? Date.now;
    this.#onTransition = hooks.onTransition;
    checkOptions(
      this.#failures,
      this.#failureRate,
      this.#windowSize,
      this.#minRequests,
      this.#cooldownMs,
    );
  }

  /** The state now (an open breaker whose cool-down has passed is half-open). */
  get state(): BreakerState {
    this.#tick();
    return this.#state;
  }

  /** True when {@link acquire} would give a permit now. */
  get available(): boolean {
    const state = this.state;
    return state === BreakerState.Up || (state === BreakerState.HalfOpen && !this.#probeInFlight);
  }

  /**
   * While open, the time (clock ms) at which the breaker lets a probe through; `undefined` when
   * it is not open (up, or half-open: then a probe in flight settles it).
   */
  get retryAt(): number | undefined {
    return this.state === BreakerState.Open ? this.#openedAt + this.#cooldownMs : undefined;
  }

  /** Leave to send one request now, or `undefined` when open or while the probe is out. */
  acquire(): BreakerPermit | undefined {
    const state = this.state;
    if (state === BreakerState.Up) return { probe: false, generation: this.#generation };
    if (state === BreakerState.HalfOpen && !this.#probeInFlight) {
      this.#probeInFlight = true;
      return { probe: true, generation: this.#generation };
    }
    return undefined;
  }

  /** The endpoint answered: closes a half-open breaker. */
  succeeded(permit: BreakerPermit): void {
    if (!this.#current(permit)) return;
    if (permit.probe) {
      this.#probeInFlight = false;
      this.#resetCounts();
      this.#moveTo(BreakerState.Up);
      return;
    }
    this.#consecutive = 0;
    this.#record(false);
  }

  /** The endpoint failed (connection error, 5xx, 429, time-out): may open the breaker. */
  failed(permit: BreakerPermit): void {
    if (!this.#current(permit)) return;
    if (permit.probe) {
      this.#probeInFlight = false;
      this.#open('the half-open probe failed');
      return;
    }
    this.#consecutive++;
    this.#record(true);
    if (this.#consecutive >= this.#failures) {
      this.#open(`${this.#consecutive} consecutive failures`);
      return;
    }
    const recent = this.#window.length;
    const failed = this.#window.filter(Boolean).length;
    if (recent >= this.#minRequests && failed / recent >= this.#failureRate) {
      this.#open(`${failed} of the last ${recent} requests failed`);
    }
  }

  /** The request was given up without an outcome (the task was aborted): counts for nothing. */
  cancelled(permit: BreakerPermit): void {
    if (this.#current(permit) && permit.probe) this.#probeInFlight = false;
  }

  snapshot(): BreakerSnapshot {
    const retryAt = this.retryAt;
    return {
      state: this.#state,
      consecutiveFailures: this.#consecutive,
      recentFailures: this.#window.filter(Boolean).length,
      recentRequests: this.#window.length,
      opened: this.#opened,
      ...(retryAt !== undefined && { retryAt }),
      ...(this.#reason !== undefined && { reason: this.#reason }),
    };
  }

  #current(permit: BreakerPermit): boolean {
    this.#tick();
    return permit.generation === this.#generation;
  }

  /** open → half-open once the cool-down has passed. */
  #tick(): void {
    if (this.#state === BreakerState.Open && this.#now() >= this.#openedAt + this.#cooldownMs) {
      this.#moveTo(BreakerState.HalfOpen);
    }
  }

  #open(reason: string): void {
    this.#openedAt = this.#now();
    this.#opened++;
    this.#reason = reason;
    this.#moveTo(BreakerState.Open, reason);
  }

  #moveTo(to: BreakerState, reason?: string): void {
    const from = this.#state;
    this.#state = to;
    this.#generation++;
    this.#onTransition?.({ from, to, ...(reason !== undefined && { reason }) });
  }

  #record(failed: boolean): void {
    if (this.#window.length < this.#windowSize) this.#window.push(failed);
    else this.#window[this.#windowNext] = failed;
    this.#windowNext = (this.#windowNext + 1) % this.#windowSize;
  }

  #resetCounts(): void {
    this.#consecutive = 0;
    this.#window = [];
    this.#windowNext = 0;
  }
}

function checkOptions(
  failures: number,
  failureRate: number,
  window: number,
  minRequests: number,
  cooldownMs: number,
): void {
  const bad = (what: string, value: number) => {
    throw new InputError(`circuit breaker: ${what}, got ${value}`);
  };
  if (!Number.isInteger(failures) || failures < 1) bad('failures must be an integer ≥ 1', failures);
  if (!(failureRate > 0 && failureRate <= 1)) bad('failureRate must be in (0, 1]', failureRate);
  if (!Number.isInteger(window) || window < 1) bad('window must be an integer ≥ 1', window);
  if (!Number.isInteger(minRequests) || minRequests < 1 || minRequests > window) {
    bad(`minRequests must be an integer from 1 to window (${window})`, minRequests);
  }
  if (!Number.isFinite(cooldownMs) || cooldownMs < 0) bad('cooldownMs must be ≥ 0', cooldownMs);
}
