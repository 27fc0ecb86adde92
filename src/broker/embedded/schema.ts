import type Database from 'better-sqlite3';
import { BrokerError, ErrorCode } from '../../protocol/errors.js';

/** Version of the on-disk layout, kept in `PRAGMA user_version`. */
export const SCHEMA_VERSION = 3;

/**
 * Bodies longer than this many bytes live in the `bodies` table, not in their message's row:
 * leasing, extending and settling rewrite the row, and a row without its body is a fraction of
 * the size. Small bodies (a task envelope) stay in the row, where reading them costs nothing
 * more.
 */
export const INLINE_BODY_BYTES = 256;

/** Message states (the `messages.state` column). */
export const MessageState = {
  /** Deliverable now. */
  Ready: 0,
  /** Deliverable at `due_at` (delayed publish or nack with delay). */
  Delayed: 1,
  /** Leased to a consumer until `due_at`. */
  Leased: 2,
} as const;

/**
 * The tables. Every message row sits in exactly one of three partial indexes (ready, delayed,
 * leased), so a state change touches two index entries and no index holds rows it never needs.
 * `expires_at` is set only for queues with a message TTL, so its index costs nothing elsewhere.
 */
const DDL = `
CREATE TABLE IF NOT EXISTS queues (
  name              TEXT PRIMARY KEY,
  max_deliveries    INTEGER NOT NULL,
  dead_letter_queue TEXT NOT NULL,
  priorities        INTEGER NOT NULL,
  lease_ms          INTEGER NOT NULL,
  message_ttl_ms    INTEGER,
  durable           INTEGER NOT NULL,
  owner             TEXT,
  created_at        INTEGER NOT NULL,
  -- 1 while paused: consumers of every process lease nothing from it.
  paused            INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS queues_owner ON queues(owner) WHERE owner IS NOT NULL;

CREATE TABLE IF NOT EXISTS messages (
  seq         INTEGER PRIMARY KEY,
  queue       TEXT NOT NULL,
  id          TEXT NOT NULL,
  priority    INTEGER NOT NULL,
  state       INTEGER NOT NULL,
  due_at      INTEGER,
  lease_token INTEGER,
  deliveries  INTEGER NOT NULL DEFAULT 0,
  created_at  INTEGER NOT NULL,
  expires_at  INTEGER,
  last_error  TEXT,
  headers     TEXT,
  -- NULL when the body is in \`bodies\` (longer than INLINE_BODY_BYTES).
  body        BLOB
);
CREATE INDEX IF NOT EXISTS messages_ready   ON messages(queue, priority DESC, seq) WHERE state = 0;
CREATE INDEX IF NOT EXISTS messages_delayed ON messages(queue, due_at) WHERE state = 1;
CREATE INDEX IF NOT EXISTS messages_leased  ON messages(queue, due_at) WHERE state = 2;
CREATE INDEX IF NOT EXISTS messages_expiry  ON messages(expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS bodies (
  seq  INTEGER PRIMARY KEY,
  body BLOB NOT NULL
);
-- Every way a message leaves (ack, purge, dead-lettering, TTL) takes its stored body along.
CREATE TRIGGER IF NOT EXISTS messages_drop_body AFTER DELETE ON messages
  WHEN old.body IS NULL BEGIN DELETE FROM bodies WHERE seq = old.seq; END;

CREATE TABLE IF NOT EXISTS bindings (
  queue   TEXT NOT NULL,
  pattern TEXT NOT NULL,
  owner   TEXT,
  PRIMARY KEY (queue, pattern)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS handles (
  id           TEXT PRIMARY KEY,
  pid          INTEGER NOT NULL,
  host         TEXT NOT NULL,
  opened_at    INTEGER NOT NULL,
  heartbeat_at INTEGER NOT NULL,
  -- Leases taken by this handle carry tokens in [num * 2^24, (num + 1) * 2^24) (see LEASE_TOKEN_SPAN).
  num          INTEGER,
  -- The pid namespace of the process (Linux), so that a pid is only judged where it means something.
  pid_ns       TEXT
) WITHOUT ROWID;

-- Monotonic counters (the handle numbers, never reused).
CREATE TABLE IF NOT EXISTS counters (
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS consumers (
  id     INTEGER PRIMARY KEY,
  handle TEXT NOT NULL,
  queue  TEXT NOT NULL,
  tag    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS consumers_queue  ON consumers(queue);
CREATE INDEX IF NOT EXISTS consumers_handle ON consumers(handle);
`;

const V1_TO_V2 = `
ALTER TABLE messages RENAME TO messages_v1;
DROP INDEX IF EXISTS messages_ready;
DROP INDEX IF EXISTS messages_delayed;
DROP INDEX IF EXISTS messages_leased;
DROP INDEX IF EXISTS messages_expiry;
CREATE TABLE messages (
  seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, id TEXT NOT NULL, priority INTEGER NOT NULL,
  state INTEGER NOT NULL, due_at INTEGER, lease_token INTEGER,
  deliveries INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, expires_at INTEGER,
  last_error TEXT, headers TEXT, body BLOB
);
INSERT INTO messages SELECT seq, queue, id, priority, state, due_at, lease_token, deliveries,
  created_at, expires_at, last_error, headers, body FROM messages_v1;
DROP TABLE messages_v1;
`;

/** Columns version 3 added to tables of earlier versions (no pause flag, no handle numbers). */
const V3_COLUMNS = [
  ['queues', 'paused', 'INTEGER NOT NULL DEFAULT 0'],
  ['handles', 'num', 'INTEGER'],
  ['handles', 'pid_ns', 'TEXT'],
] as const;

/** Adds the columns of version 3 to the tables of an earlier file that lack them. */
function addV3Columns(db: Database.Database): void {
  for (const [table, column, type] of V3_COLUMNS) {
    const columns = db.pragma(`table_info(${table})`) as { name: string }[];
    if (columns.length > 0 && !columns.some((c) => c.name === column)) {
      db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${type}`);
    }
  }
}

/**
 * Lease tokens of one handle lie in `[num * LEASE_TOKEN_SPAN, (num + 1) * LEASE_TOKEN_SPAN)`, so
 * the leases of a handle whose process died can be found and given back at once.
 */
export const LEASE_TOKEN_SPAN = 2 ** 24;
/**
 * First handle number. Version 2 drew lease tokens at random below 2^47, i.e. below this number
 * times the span: leases left by those processes never look like a numbered handle's.
 */
export const FIRST_HANDLE_NUMBER = 2 ** 23;

/** WAL pages after which a commit checkpoints, when no checkpoint thread does it. */
export const WAL_AUTOCHECKPOINT_PAGES = 4000;

export interface PragmaOptions {
  synchronous: 'normal' | 'full';
  busyTimeoutMs: number;
}

/** Sets the connection's pragmas: WAL, the durability level, the busy timeout and the cache. */
export function applyPragmas(db: Database.Database, options: PragmaOptions): void {
  db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs))}`);
  const mode = db.pragma('journal_mode = WAL', { simple: true });
  if (String(mode).toLowerCase() !== 'wal') {
    throw new BrokerError(
      ErrorCode.BrokerUnavailable,
      `embedded broker "${db.name}": could not switch to WAL journal mode (got "${String(mode)}")`,
    );
  }
  db.pragma(`synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
  // 32 MiB page cache; the queue itself stays on disk.
  db.pragma('cache_size = -32000');
  db.pragma('temp_store = MEMORY');
  db.pragma('foreign_keys = OFF');
  // Checkpoint less often than the default 1000 pages, and truncate a grown WAL afterwards.
  // (A handle with a checkpoint thread turns this off; see Checkpointer.)
  db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
  db.pragma(`journal_size_limit = ${64 * 1024 * 1024}`);
}

/** Creates the tables if missing; refuses a file written by a newer layout. */
export function migrate(db: Database.Database): void {
  const version = Number(db.pragma('user_version', { simple: true }));
  if (version > SCHEMA_VERSION) {
    throw new BrokerError(
      ErrorCode.BrokerState,
      `embedded broker "${db.name}": schema version ${version} is newer than this qtune supports (${SCHEMA_VERSION})`,
    );
  }
  if (version === SCHEMA_VERSION) return;
  db.exec('BEGIN IMMEDIATE');
  try {
    // Version 1 kept every body in its row, NOT NULL: rebuild the table with a nullable body.
    if (version === 1) db.exec(V1_TO_V2);
    addV3Columns(db);
    db.exec(DDL);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
    db.exec('COMMIT');
  } catch (err) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw err;
  }
}
