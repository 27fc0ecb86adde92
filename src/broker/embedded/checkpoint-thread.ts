// The embedded broker's checkpoint thread: WAL checkpoints on a connection of its own, so that
// the handle's commits never pay for copying pages into the database file. See Checkpointer in
// checkpointer.ts.
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { CheckpointInit } from './checkpointer.js';

const init = workerData as CheckpointInit;
// RESTART waits this long for a writer to finish; PASSIVE never waits.
const db = new Database(init.path, { timeout: 1_000 });
db.pragma(`synchronous = ${init.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
db.pragma('cache_size = -2000');
const passive = db.prepare<[], { busy: number; log: number; checkpointed: number }>(
  'PRAGMA wal_checkpoint(PASSIVE)',
);
const restart = db.prepare('PRAGMA wal_checkpoint(RESTART)');

/** Longest pause between checkpoints while nothing is written, in ms. */
const IDLE_INTERVAL_MS = 250;
let delay = init.intervalMs;
let timer: NodeJS.Timeout;
/** WAL size at the last tick: a change means the handle is writing. */
let lastLog = -1;

function tick(): void {
  let wrote = true;
  try {
    // Copies what is committed without holding up writers...
    const r = passive.get();
    wrote = r !== undefined && r.log !== lastLog;
    lastLog = r?.log ?? -1;
    // ...but under a steady stream of commits the WAL never runs empty, so it would only grow:
    // past the autocheckpoint size, finish the (mostly done) checkpoint with writers held back
    // for a moment, so that the next commit starts the WAL over from its beginning.
    if (r !== undefined && r.log >= init.restartPages) restart.run();
  } catch {
    // Another connection is checkpointing, or the file is busy: the next tick tries again.
  }
  // Every few ms while the handle writes; backing off to a few times a second while idle.
  delay = wrote ? init.intervalMs : Math.min(delay * 2, IDLE_INTERVAL_MS);
  timer = setTimeout(tick, delay);
}
timer = setTimeout(tick, delay);

// Asked to stop: close the connection and end the thread.
parentPort?.once('message', () => {
  clearTimeout(timer);
  db.close();
  process.exit(0);
});
