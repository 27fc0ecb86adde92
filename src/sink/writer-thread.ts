// The sink's writer thread: decodes batches of result messages and upserts their rows into a
// SQLite result table over its own connection. See ThreadWriter in writer.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { toError } from '../protocol/errors.js';
import { SqliteStore } from '../store/sqlite/index.js';
import { decodeRows, type SinkMessage } from './rows.js';
import { THREAD_READY, type ThreadInit, type ThreadReply, type ThreadRequest } from './writer.js';

const init = workerData as ThreadInit;
const port = parentPort!;
const store = new SqliteStore({ path: init.path });
await store.ensureResultTable(init.table);
port.postMessage(THREAD_READY);

// upsertResults runs synchronously inside its promise, so batches are written in arrival order.
port.on('message', (req: ThreadRequest) => {
  const messages: SinkMessage[] = [];
  let start = 0;
  for (let i = 0; i < req.ids.length; i++) {
    const end = req.ends[i]!;
    messages.push({
      id: req.ids[i]!,
      queue: req.queue,
      body: Buffer.from(req.bytes, start, end - start),
    });
    start = end;
  }
  const { rows, invalid } = decodeRows(messages, init.keyFields);
  // The rows hold strings of their own: the buffer goes back to be filled again.
  const reply = (r: ThreadReply) => port.postMessage({ ...r, bytes: req.bytes }, [req.bytes]);
  if (rows.length === 0) {
    reply({ seq: req.seq, invalid, inserted: 0, updated: 0 });
    return;
  }
  store.upsertResults(init.table, rows).then(
    (r) => reply({ seq: req.seq, invalid, ...r }),
    (err: unknown) => reply({ seq: req.seq, invalid, error: toError(err).message }),
  );
});
