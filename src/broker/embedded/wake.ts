import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

/** Poll period used when the directory cannot be watched. */
const UNWATCHED_POLL_MS = 50;

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

  /** Checks `data_version` now and reports an external change if there was one. */
  check(): void {
    this.#checkPending = false;
    if (this.#stopped) return;
    let version: number;
    try {
      version = this.#o.dataVersion();
    } catch (err) {
      this.#o.onError(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    if (version === this.#version) return;
    this.#version = version;
    this.#guard(this.#o.onExternalChange);
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
    setImmediate(() => this.check());
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
