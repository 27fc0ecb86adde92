import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

/** Poll period used when the directory cannot be watched. */
const UNWATCHED_POLL_MS = 50;
/** Delays of the re-checks after a file event whose check saw no commit yet. */
const RECHECK_DELAYS_MS = [1, 2, 5, 10] as const;

export interface WakeOptions {
  /** The database file; its directory is watched. */
  path: string;
  /** Safety poll period in ms. */
  pollMs: number;
  /** `PRAGMA data_version` of the handle's connection: changes when ANOTHER connection commits. */
  dataVersion: () => number;
  /** Another connection committed something. */
  onExternalChange: () => void;
  /** Periodic tick (safety poll). */
  onTick: () => void;
  onError: (error: Error) => void;
}

/**
 * Wakes a handle when another process commits, without busy polling. It watches the database's
 * directory (inotify on Linux; the `-wal` file is written by every commit, and watching the
 * directory survives the WAL file being deleted and re-created), coalesces a burst of events into
 * one check per event-loop turn, and compares `PRAGMA data_version` so that the handle's own
 * commits and unrelated files cost nothing more. A slow timer covers missed events.
 */
export class Waker {
  readonly #o: WakeOptions;
  readonly #base: string;
  #watcher: FSWatcher | null = null;
  #timer: NodeJS.Timeout | null = null;
  #checkPending = false;
  #version = -1;
  #referenced = true;
  #stopped = false;

  constructor(options: WakeOptions) {
    this.#o = options;
    this.#base = basename(options.path);
  }

  /** True when the directory is watched (otherwise it polls every 50 ms). */
  get watching(): boolean {
    return this.#watcher !== null;
  }

  start(): void {
    this.#version = this.#o.dataVersion();
    try {
      this.#watcher = watch(dirname(this.#o.path), { persistent: true }, (_event, filename) => {
        if (filename === null || filename.startsWith(this.#base)) this.#scheduleCheck();
      });
      this.#watcher.on('error', (err) => {
        this.#o.onError(err);
        this.#watcher?.close();
        this.#watcher = null;
        this.#startTimer();
      });
    } catch (err) {
      this.#watcher = null;
      this.#o.onError(err instanceof Error ? err : new Error(String(err)));
    }
    this.#startTimer();
    this.#applyRef();
  }

  stop(): void {
    this.#stopped = true;
    this.#watcher?.close();
    this.#watcher = null;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Keeps the process alive while consumers are active; lets it exit otherwise. */
  setReferenced(referenced: boolean): void {
    this.#referenced = referenced;
    this.#applyRef();
  }

  /** Checks `data_version` now and reports an external change if there was one; true if so. */
  check(): boolean {
    this.#checkPending = false;
    if (this.#stopped) return false;
    let version: number;
    try {
      version = this.#o.dataVersion();
    } catch (err) {
      this.#o.onError(err instanceof Error ? err : new Error(String(err)));
      return false;
    }
    if (version === this.#version) return false;
    this.#version = version;
    this.#guard(this.#o.onExternalChange);
    return true;
  }

  /**
   * Checks after a file event. A writer appends its frames to the `-wal` file (the event)
   * before it publishes the commit in the shared-memory index, which raises no event of its
   * own; a check that runs in between sees no change. So an event whose check found nothing is
   * checked again a few times over the next milliseconds.
   */
  #checkAfterEvent(attempt: number): void {
    if (this.check() || this.#stopped || attempt >= RECHECK_DELAYS_MS.length) return;
    const t = setTimeout(() => this.#checkAfterEvent(attempt + 1), RECHECK_DELAYS_MS[attempt]);
    if (!this.#referenced) t.unref();
  }

  /** Runs a callback from a timer or watcher, where a throw would crash the process. */
  #guard(callback: () => void): void {
    try {
      callback();
    } catch (err) {
      this.#o.onError(err instanceof Error ? err : new Error(String(err)));
    }
  }

  #scheduleCheck(): void {
    if (this.#checkPending || this.#stopped) return;
    this.#checkPending = true;
    setImmediate(() => this.#checkAfterEvent(0));
  }

  #startTimer(): void {
    if (this.#timer) clearInterval(this.#timer);
    if (this.#stopped) return;
    const period = this.#watcher ? this.#o.pollMs : Math.min(this.#o.pollMs, UNWATCHED_POLL_MS);
    this.#timer = setInterval(() => {
      this.check();
      this.#guard(this.#o.onTick);
    }, period);
    this.#applyRef();
  }

  #applyRef(): void {
    const fn = this.#referenced ? 'ref' : 'unref';
    this.#timer?.[fn]();
    this.#watcher?.[fn]();
  }
}
