import { Worker } from 'node:worker_threads';
import { builtModuleExists } from '../built-module.js';
import type Database from 'better-sqlite3';
import { toError } from '../../protocol/errors.js';
import { WAL_AUTOCHECKPOINT_PAGES } from './schema.js';

/** What the checkpoint thread is started with. */
export interface CheckpointInit {
  path: string;
  /** Time between passive checkpoints, in ms. */
  intervalMs: number;
  synchronous: 'normal' | 'full';
  /** WAL size in pages past which a checkpoint waits for writers, so that the WAL restarts. */
  restartPages: number;
}

/** Time between two checkpoints of the background thread, in ms. */
const CHECKPOINT_INTERVAL_MS = 20;

const THREAD_MODULE = new URL('./checkpoint-thread.js', import.meta.url);

/** Whether the thread's module is there to run: it is in a build, not when run from sources. */
export function checkpointThreadAvailable(): boolean {
  return builtModuleExists(THREAD_MODULE);
}

/**
 * Moves WAL checkpoints off the committing thread: the handle's own connection stops
 * checkpointing, and a worker thread with its own connection runs passive checkpoints every few
 * milliseconds, copying committed pages into the database file while the handle goes on
 * committing. Passive checkpoints take no write lock, so they never make a writer wait; once
 * the WAL has grown past the autocheckpoint size anyway (commits never stop long enough for it
 * to run empty), one checkpoint holds writers back for the moment it takes to finish, so the
 * WAL starts over. If the thread dies, the connection checkpoints by itself again, as it would
 * without one.
 */
export class Checkpointer {
  readonly #worker: Worker;
  #stopped = false;

  private constructor(db: Database.Database, init: CheckpointInit, onError: (e: Error) => void) {
    this.#worker = new Worker(THREAD_MODULE, {
      workerData: init,
      // It allocates almost nothing: keep its heap (and the process's RSS) small.
      resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 },
    });
    // The thread must not keep a process alive that is otherwise done.
    this.#worker.unref();
    const fallBack = (error: Error | undefined) => {
      if (this.#stopped) return;
      this.#stopped = true;
      if (db.open) db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
      if (error) onError(error);
    };
    this.#worker.on('error', (err) => fallBack(toError(err)));
    this.#worker.on('exit', (code) =>
      fallBack(code === 0 ? undefined : new Error(`checkpoint thread exited with code ${code}`)),
    );
  }

  /**
   * Starts a checkpoint thread for `db` (the file at `path`); undefined when the thread's module
   * is not available, and the connection goes on checkpointing by itself.
   */
  static start(
    db: Database.Database,
    path: string,
    synchronous: 'normal' | 'full',
    onError: (e: Error) => void,
  ): Checkpointer | undefined {
    if (!checkpointThreadAvailable()) return undefined;
    const checkpointer = new Checkpointer(
      db,
      {
        path,
        intervalMs: CHECKPOINT_INTERVAL_MS,
        synchronous,
        restartPages: WAL_AUTOCHECKPOINT_PAGES,
      },
      onError,
    );
    db.pragma('wal_autocheckpoint = 0');
    return checkpointer;
  }

  /** Stops the thread and closes its connection; the handle's own close checkpoints last. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    const exited = new Promise<void>((resolve) => this.#worker.once('exit', () => resolve()));
    this.#worker.postMessage('stop');
    const timer = setTimeout(() => void this.#worker.terminate(), 2_000);
    await exited;
    clearTimeout(timer);
  }
}
