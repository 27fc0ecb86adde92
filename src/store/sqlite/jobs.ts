import type Database from 'better-sqlite3';
import type { JobItem, JobItemCounts, JobRecord, JobStore, NewJob, NewJobItem } from '../jobs.js';
import { jobConflict, jobDifference } from '../jobs.js';
import { toItem, toJob } from '../rows.js';

/**
 * The job-items table: a rowid table, so items sit in the order they were added, with `(job,
 * id)` as a unique index. Item ids are hashes: a table clustered on them put every batch of new
 * items on random pages, and each commit rewrote most of the table.
 */
function jobItemsTable(name: string): string {
  return `
CREATE TABLE IF NOT EXISTS ${name} (
  job     TEXT NOT NULL,
  id      TEXT NOT NULL,
  seq     INTEGER NOT NULL,
  item    TEXT NOT NULL,
  payload TEXT NOT NULL,
  state   TEXT NOT NULL,
  task_id TEXT,
  PRIMARY KEY (job, id)
);`;
}

const JOB_ITEM_INDEXES = `
CREATE UNIQUE INDEX IF NOT EXISTS qtune_job_items_seq ON qtune_job_items(job, seq);
CREATE INDEX IF NOT EXISTS qtune_job_items_state ON qtune_job_items(job, state, seq);
`;

/** Tables of the batch-job part of the store. */
export const JOB_DDL = `
CREATE TABLE IF NOT EXISTS qtune_jobs (
  name       TEXT PRIMARY KEY,
  queue      TEXT NOT NULL,
  table_name TEXT NOT NULL,
  key_fields TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
${jobItemsTable('qtune_job_items')}
${JOB_ITEM_INDEXES}`;

/**
 * Schema version 1 to 2: job items move from a table clustered on `(job, id)` (WITHOUT ROWID)
 * to the rowid table of {@link JOB_DDL}, in their order within each job.
 */
export const JOB_ITEMS_TO_ROWID = `
${jobItemsTable('qtune_job_items_v2')}
INSERT INTO qtune_job_items_v2 (job, id, seq, item, payload, state, task_id)
  SELECT job, id, seq, item, payload, state, task_id FROM qtune_job_items ORDER BY job, seq;
DROP TABLE qtune_job_items;
ALTER TABLE qtune_job_items_v2 RENAME TO qtune_job_items;
${JOB_ITEM_INDEXES}`;

interface JobRow {
  name: string;
  queue: string;
  table_name: string;
  key_fields: string;
  created_at: number;
  updated_at: number;
}

interface ItemRow {
  id: string;
  seq: number;
  item: string;
  payload: string;
  state: JobItem['state'];
  task_id: string | null;
}

function jobOf(row: JobRow): JobRecord {
  return toJob({ ...row, key_fields: JSON.parse(row.key_fields) as string[] });
}

function itemOf(row: ItemRow): JobItem {
  return toItem({
    ...row,
    item: JSON.parse(row.item) as Record<string, unknown>,
    payload: JSON.parse(row.payload) as unknown,
  });
}

/** The batch-job part of {@link SqliteStore}: each call is one transaction. */
export class SqliteJobs implements JobStore {
  readonly #db: Database.Database;
  readonly #stmts;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#stmts = {
      insertJob: db.prepare(
        `INSERT INTO qtune_jobs (name, queue, table_name, key_fields, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
      ),
      getJob: db.prepare<[string], JobRow>('SELECT * FROM qtune_jobs WHERE name = ?'),
      listJobs: db.prepare<[], JobRow>('SELECT * FROM qtune_jobs ORDER BY created_at, name'),
      maxSeq: db.prepare<[string], { s: number | null }>(
        'SELECT MAX(seq) AS s FROM qtune_job_items WHERE job = ?',
      ),
      insertItem: db.prepare(
        `INSERT INTO qtune_job_items (job, id, seq, item, payload, state)
         VALUES (?, ?, ?, ?, ?, 'new') ON CONFLICT DO NOTHING`,
      ),
      unpublished: db.prepare<[string, number], ItemRow>(
        `SELECT id, seq, item, payload, state, task_id FROM qtune_job_items
         WHERE job = ? AND state = 'new' ORDER BY seq LIMIT ?`,
      ),
      markQueued: db.prepare(
        "UPDATE qtune_job_items SET state = 'queued', task_id = ? WHERE job = ? AND id = ?",
      ),
      getItem: db.prepare<[string, string], ItemRow>(
        'SELECT id, seq, item, payload, state, task_id FROM qtune_job_items WHERE job = ? AND id = ?',
      ),
      listItems: db.prepare<[string, number, number], ItemRow>(
        `SELECT id, seq, item, payload, state, task_id FROM qtune_job_items
         WHERE job = ? AND seq > ? ORDER BY seq LIMIT ?`,
      ),
      counts: db.prepare<[string], { state: JobItem['state']; n: number }>(
        'SELECT state, COUNT(*) AS n FROM qtune_job_items WHERE job = ? GROUP BY state',
      ),
      touch: db.prepare('UPDATE qtune_jobs SET updated_at = ? WHERE name = ?'),
    };
  }

  async upsertJob(job: NewJob, now = Date.now()): Promise<JobRecord> {
    return this.#db
      .transaction(() => {
        const keyFields = JSON.stringify(job.keyFields);
        this.#stmts.insertJob.run(job.name, job.queue, job.table, keyFields, now, now);
        const stored = jobOf(this.#stmts.getJob.get(job.name)!);
        if (jobDifference(stored, job) !== undefined) jobConflict(stored, job);
        return stored;
      })
      .immediate();
  }

  async getJob(name: string): Promise<JobRecord | undefined> {
    const row = this.#stmts.getJob.get(name);
    return row ? jobOf(row) : undefined;
  }

  async listJobs(): Promise<JobRecord[]> {
    return this.#stmts.listJobs.all().map(jobOf);
  }

  async addJobItems(job: string, items: readonly NewJobItem[]): Promise<number> {
    return this.#db
      .transaction(() => {
        let seq = this.#stmts.maxSeq.get(job)?.s ?? 0;
        let added = 0;
        for (const it of items) {
          const r = this.#stmts.insertItem.run(
            job,
            it.id,
            seq + 1,
            JSON.stringify(it.item),
            JSON.stringify(it.payload ?? null),
          );
          if (r.changes === 1) {
            seq++;
            added++;
          }
        }
        if (added > 0) this.#stmts.touch.run(Date.now(), job);
        return added;
      })
      .immediate();
  }

  async unpublishedItems(job: string, limit: number): Promise<JobItem[]> {
    return this.#stmts.unpublished.all(job, limit).map(itemOf);
  }

  async markItemsQueued(
    job: string,
    published: readonly { id: string; taskId: string }[],
  ): Promise<void> {
    this.#db.transaction(() => {
      for (const p of published) this.#stmts.markQueued.run(p.taskId, job, p.id);
    })();
  }

  async getJobItems(job: string, ids: readonly string[]): Promise<JobItem[]> {
    const rows: ItemRow[] = [];
    for (const id of ids) {
      const row = this.#stmts.getItem.get(job, id);
      if (row) rows.push(row);
    }
    return rows.sort((a, b) => a.seq - b.seq).map(itemOf);
  }

  async listJobItems(
    job: string,
    options: { afterSeq?: number; limit?: number } = {},
  ): Promise<JobItem[]> {
    return this.#stmts.listItems.all(job, options.afterSeq ?? 0, options.limit ?? 1000).map(itemOf);
  }

  async jobItemCounts(job: string): Promise<JobItemCounts> {
    const c: JobItemCounts = { total: 0, new: 0, queued: 0 };
    for (const { state, n } of this.#stmts.counts.all(job)) {
      c[state] = n;
      c.total += n;
    }
    return c;
  }
}
