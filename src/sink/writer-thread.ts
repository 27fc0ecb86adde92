// The sink's writer thread: decodes batches of result messages and upserts their rows into a
// result table over its own handle on the store (one whose writes block: SQLite). See
// ThreadWriter in writer.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { toError } from '../protocol/errors.js';
import { openStore } from '../store/open.js';
import { decodeRowChunks } from './rows.js';
import {
  THREAD_READY,
  type ThreadInit,
  type ThreadReply,
  type ThreadRequest,
  type WriteOutcome,
} from './writer.js';

/**
 * Rows decoded and upserted at a time within a batch's transaction: the rows of a chunk die
 * before the next one is decoded, instead of a whole batch's rows surviving collections.
 */
const CHUNK_ROWS = 512;

const init = workerData as ThreadInit;
const port = parentPort!;
const store = await openStore(init.store);
await store.results.ensureResultTable(init.table);
port.postMessage(THREAD_READY);

// Where writes block, upsertResultChunks runs synchronously inside its promise, so batches are
// written in arrival order.
port.on('message', (req: ThreadRequest) => {
  const invalid: WriteOutcome['invalid'] = [];
  const messageAt = (i: number) => {
    const start = i === 0 ? 0 : req.ends[i - 1]!;
    return {
      id: req.ids[i]!,
      queue: req.queue,
      body: Buffer.from(req.bytes, start, req.ends[i]! - start),
    };
  };
  const chunks = decodeRowChunks(req.ids.length, messageAt, CHUNK_ROWS, init.keyFields, invalid);
  // The rows hold strings of their own: the buffer goes back to be filled again.
  const reply = (r: ThreadReply) => port.postMessage({ ...r, bytes: req.bytes }, [req.bytes]);
  store.results.upsertResultChunks(init.table, chunks).then(
    (r) => reply({ seq: req.seq, invalid, ...r }),
    (err: unknown) => reply({ seq: req.seq, invalid, error: toError(err).message }),
  );
});
