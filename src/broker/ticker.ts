/**
 * One interval shared by many waiting things (leases, heartbeats): it runs `tick` at the
 * shortest period asked for so far, and `stop` ends it. Unref'd: it never holds a process open.
 */
export class Ticker {
  readonly #tick: () => void;
  #timer: NodeJS.Timeout | undefined;
  #every = Infinity;

  constructor(tick: () => void) {
    this.#tick = tick;
  }

  /** Ticks at least every `ms` from now on; a shorter period than the current one restarts it. */
  atLeastEvery(ms: number): void {
    if (this.#timer !== undefined && ms >= this.#every) return;
    clearInterval(this.#timer);
    this.#every = ms;
    this.#timer = setInterval(this.#tick, ms).unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#every = Infinity;
  }
}
