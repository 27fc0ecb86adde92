import { describe, expect, it } from 'vitest';
import {
  BREAKER_DEFAULTS,
  BreakerState,
  CircuitBreaker,
  type BreakerOptions,
  type BreakerTransition,
} from '../../../src/worker/handlers/circuit-breaker.js';

/** A breaker on a clock the test moves by hand, recording its transitions. */
function breakerAt(options: BreakerOptions = {}) {
  let now = 1_000_000;
  const transitions: BreakerTransition[] = [];
  const breaker = new CircuitBreaker(options, {
    now: () => now,
    onTransition: (t) => transitions.push(t),
  });
  return {
    breaker,
    transitions,
    advance: (ms: number) => void (now += ms),
    /** One request sent and settled now. */
    outcome(ok: boolean) {
      const permit = breaker.acquire();
      if (!permit) throw new Error(`breaker refused a request in state ${breaker.state}`);
      if (ok) breaker.succeeded(permit);
      else breaker.failed(permit);
    },
  };
}

describe('CircuitBreaker', () => {
  it('has the documented defaults', () => {
    expect(BREAKER_DEFAULTS).toEqual({
      failures: 5,
      failureRate: 0.5,
      window: 20,
      minRequests: 10,
      cooldownMs: 2_000,
    });
  });

  it('stays up through occasional failures', () => {
    const b = breakerAt();
    // One failure in twenty, a hundred times over: a 5 % failure rate never opens it.
    for (let i = 0; i < 2_000; i++) b.outcome(i % 20 !== 7);
    expect(b.breaker.state).toBe(BreakerState.Up);
    expect(b.transitions).toEqual([]);
  });

  it('opens after the configured number of consecutive failures', () => {
    const b = breakerAt({ failures: 3 });
    b.outcome(false);
    b.outcome(false);
    b.outcome(true); // a success resets the run
    b.outcome(false);
    b.outcome(false);
    expect(b.breaker.state).toBe(BreakerState.Up);
    b.outcome(false);
    expect(b.breaker.state).toBe(BreakerState.Open);
    expect(b.breaker.snapshot()).toMatchObject({
      state: 'open',
      consecutiveFailures: 3,
      opened: 1,
      reason: '3 consecutive failures',
    });
    expect(b.transitions).toEqual([{ from: 'up', to: 'open', reason: '3 consecutive failures' }]);
  });

  it('opens when the failure rate over the window reaches the threshold, once the window holds enough outcomes', () => {
    const b = breakerAt({ failures: 100, failureRate: 0.5, window: 10, minRequests: 6 });
    // fail, ok, fail, ok, fail: 3 of 5, but fewer than minRequests outcomes.
    for (const ok of [false, true, false, true, false]) b.outcome(ok);
    expect(b.breaker.state).toBe(BreakerState.Up);
    b.outcome(true); // 3 of 6: a success never opens it
    expect(b.breaker.state).toBe(BreakerState.Up);
    b.outcome(false); // 4 of 7 ≥ 50 %
    expect(b.breaker.state).toBe(BreakerState.Open);
    expect(b.breaker.snapshot().reason).toBe('4 of the last 7 requests failed');
  });

  it('takes the failure rate over the last `window` outcomes only', () => {
    const b = breakerAt({ failures: 100, failureRate: 0.5, window: 4, minRequests: 4 });
    for (const ok of [false, true, true, true, true, false]) b.outcome(ok);
    // The first failure has left the window: 1 of the last 4.
    expect(b.breaker.snapshot()).toMatchObject({ recentFailures: 1, recentRequests: 4 });
    expect(b.breaker.state).toBe(BreakerState.Up);
  });

  it('refuses requests while open and becomes half-open when the cool-down has passed', () => {
    const b = breakerAt({ failures: 1, cooldownMs: 5_000 });
    b.outcome(false);
    expect(b.breaker.acquire()).toBeUndefined();
    expect(b.breaker.available).toBe(false);
    expect(b.breaker.retryAt).toBe(1_000_000 + 5_000);
    b.advance(4_999);
    expect(b.breaker.acquire()).toBeUndefined();
    b.advance(1);
    expect(b.breaker.state).toBe(BreakerState.HalfOpen);
    expect(b.breaker.retryAt).toBeUndefined();
    expect(b.breaker.available).toBe(true);
  });

  it('lets exactly one probe through when half-open, and closes with fresh counts on its success', () => {
    const b = breakerAt({ failures: 2, cooldownMs: 1_000 });
    b.outcome(false);
    b.outcome(false);
    b.advance(1_000);
    const probe = b.breaker.acquire();
    expect(probe?.probe).toBe(true);
    expect(b.breaker.acquire()).toBeUndefined();
    expect(b.breaker.available).toBe(false);
    b.breaker.succeeded(probe!);
    expect(b.breaker.state).toBe(BreakerState.Up);
    expect(b.breaker.snapshot()).toMatchObject({
      consecutiveFailures: 0,
      recentFailures: 0,
      recentRequests: 0,
    });
    expect(b.breaker.acquire()?.probe).toBe(false);
    expect(b.transitions.map((t) => t.to)).toEqual(['open', 'half-open', 'up']);
  });

  it('re-opens for another cool-down when the probe fails', () => {
    const b = breakerAt({ failures: 1, cooldownMs: 1_000 });
    b.outcome(false);
    b.advance(1_500);
    const probe = b.breaker.acquire()!;
    b.advance(200);
    b.breaker.failed(probe);
    expect(b.breaker.state).toBe(BreakerState.Open);
    expect(b.breaker.retryAt).toBe(1_000_000 + 1_700 + 1_000);
    expect(b.breaker.snapshot()).toMatchObject({
      opened: 2,
      reason: 'the half-open probe failed',
    });
    b.advance(999);
    expect(b.breaker.acquire()).toBeUndefined();
    b.advance(1);
    expect(b.breaker.acquire()?.probe).toBe(true);
  });

  it('lets another probe through when the probe is cancelled', () => {
    const b = breakerAt({ failures: 1, cooldownMs: 10 });
    b.outcome(false);
    b.advance(10);
    const probe = b.breaker.acquire()!;
    b.breaker.cancelled(probe);
    expect(b.breaker.state).toBe(BreakerState.HalfOpen);
    expect(b.breaker.acquire()?.probe).toBe(true);
  });

  it('ignores the late outcomes of requests sent before it opened', () => {
    const b = breakerAt({ failures: 2, cooldownMs: 1_000 });
    const early = [b.breaker.acquire()!, b.breaker.acquire()!, b.breaker.acquire()!];
    b.breaker.failed(early[0]!);
    b.breaker.failed(early[1]!);
    expect(b.breaker.state).toBe(BreakerState.Open);
    // A slow success from before does not close it; neither does it count once half-open.
    b.breaker.succeeded(early[2]!);
    expect(b.breaker.state).toBe(BreakerState.Open);
    b.advance(1_000);
    const probe = b.breaker.acquire()!;
    expect(b.breaker.state).toBe(BreakerState.HalfOpen);
    expect(probe.probe).toBe(true);
  });

  it('refuses options out of range, naming the value', () => {
    expect(() => new CircuitBreaker({ failures: 0 })).toThrow(/failures must be .*got 0/);
    expect(() => new CircuitBreaker({ failureRate: 1.5 })).toThrow(/failureRate .*got 1.5/);
    expect(() => new CircuitBreaker({ window: 5, minRequests: 6 })).toThrow(/minRequests .*got 6/);
    expect(() => new CircuitBreaker({ cooldownMs: -1 })).toThrow(/cooldownMs .*got -1/);
  });
});
