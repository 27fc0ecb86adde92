import { createHash } from 'node:crypto';
import { MAX_TABLE_NAME } from '../results.js';
import { ADVISORY_LOCK_SQL } from './db.js';
import type { PgDb } from './db.js';

/**
 * qtune's own tables: the same names and columns as the SQLite store, with `jsonb` for JSON,
 * `bigint` for epoch milliseconds and `boolean` for flags. Names and ids that are sorted or
 * paged on use the "C" collation, so that order is byte order whatever the database's locale.
 */
const DDL = `
CREATE TABLE IF NOT EXISTS qtune_experiments (
  name       text COLLATE "C" PRIMARY KEY,
  spec       jsonb NOT NULL,
  status     text NOT NULL,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS qtune_trials (
  experiment  text NOT NULL,
  number      integer NOT NULL,
  params      jsonb NOT NULL,
  status      text NOT NULL,
  task_id     text NOT NULL,
  value       double precision,
  step        integer,
  metrics     jsonb,
  error       text,
  attempt     integer,
  worker      jsonb,
  created_at  bigint NOT NULL,
  started_at  bigint,
  finished_at bigint,
  PRIMARY KEY (experiment, number)
);
CREATE TABLE IF NOT EXISTS qtune_reports (
  experiment text NOT NULL,
  number     integer NOT NULL,
  step       integer NOT NULL,
  value      double precision NOT NULL,
  metrics    jsonb,
  decision   text NOT NULL,
  at         bigint NOT NULL,
  PRIMARY KEY (experiment, number, step)
);
CREATE TABLE IF NOT EXISTS qtune_history (
  seq        bigserial PRIMARY KEY,
  experiment text NOT NULL,
  kind       text NOT NULL,
  number     integer NOT NULL,
  step       integer,
  value      double precision,
  status     text
);
CREATE INDEX IF NOT EXISTS qtune_history_experiment ON qtune_history (experiment, seq);
CREATE TABLE IF NOT EXISTS qtune_jobs (
  name       text COLLATE "C" PRIMARY KEY,
  queue      text NOT NULL,
  table_name text NOT NULL,
  key_fields jsonb NOT NULL,
  created_at bigint NOT NULL,
  updated_at bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS qtune_job_items (
  job     text NOT NULL,
  id      text NOT NULL,
  seq     integer NOT NULL,
  item    jsonb NOT NULL,
  payload jsonb NOT NULL,
  state   text NOT NULL,
  task_id text,
  PRIMARY KEY (job, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS qtune_job_items_seq ON qtune_job_items (job, seq);
CREATE INDEX IF NOT EXISTS qtune_job_items_state ON qtune_job_items (job, state, seq);
`;

/**
 * Creates qtune's tables when missing, in one transaction under an advisory lock so that
 * processes opening the same fresh database at once do not race on the catalog.
 */
export async function migrate(db: PgDb): Promise<void> {
  await db.transaction(async (client) => {
    await client.query(ADVISORY_LOCK_SQL, ['qtune schema']);
    await client.query(DDL);
  });
}

/** Name of a result table's `finished_at` index, kept within PostgreSQL's identifier limit. */
export function finishedAtIndex(table: string): string {
  const name = `${table}_finished_at`;
  if (name.length <= MAX_TABLE_NAME) return name;
  const hash = createHash('sha256').update(table).digest('hex').slice(0, 8);
  const suffix = `_${hash}_finished_at`;
  return table.slice(0, MAX_TABLE_NAME - suffix.length) + suffix;
}

/** DDL of result table `table` (a name {@link checkTableName} accepted) and its index. */
export function resultTableDdl(table: string): string {
  return `
CREATE TABLE IF NOT EXISTS "${table}" (
  id             text COLLATE "C" PRIMARY KEY,
  task_id        text NOT NULL,
  key            text,
  ok             boolean NOT NULL,
  value          jsonb,
  error_code     text,
  error_message  text,
  host           text NOT NULL,
  pid            integer NOT NULL,
  worker_id      text NOT NULL,
  gpu            text,
  price_per_hour double precision,
  attempt        integer NOT NULL,
  duration_ms    bigint NOT NULL,
  started_at     bigint NOT NULL,
  finished_at    bigint NOT NULL,
  stored_at      bigint NOT NULL,
  writes         integer NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS "${finishedAtIndex(table)}" ON "${table}" (finished_at);`;
}
