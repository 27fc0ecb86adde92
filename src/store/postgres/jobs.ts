import type { JobItem, JobItemCounts, JobRecord, JobStore, NewJob, NewJobItem } from '../jobs.js';
import { jobConflict, jobDifference } from '../jobs.js';
import { ADVISORY_LOCK_SQL } from './db.js';
import type { PgDb } from './db.js';
import { toItem, toJob, type ItemRow, type JobRow } from '../rows.js';

const ITEM_COLUMNS = 'id, seq, item, payload, state, task_id';

/** The batch-job part of {@link PostgresStore}: each call is one transaction. */
export class PgJobs implements JobStore {
  readonly #db: PgDb;

  constructor(db: PgDb) {
    this.#db = db;
  }

  async upsertJob(job: NewJob, now = Date.now()): Promise<JobRecord> {
    return this.#db.transaction(async (client) => {
      // A concurrent insert of the same name makes this one wait for it, then do nothing.
      await client.query(
        `INSERT INTO qtune_jobs (name, queue, table_name, key_fields, created_at, updated_at)
         VALUES ($1, $2, $3, $4::jsonb, $5, $5) ON CONFLICT DO NOTHING`,
        [job.name, job.queue, job.table, JSON.stringify(job.keyFields), now],
      );
      const r = await client.query<JobRow>('SELECT * FROM qtune_jobs WHERE name = $1', [job.name]);
      const stored = toJob(r.rows[0]!);
      if (jobDifference(stored, job) !== undefined) jobConflict(stored, job);
      return stored;
    });
  }

  async getJob(name: string): Promise<JobRecord | undefined> {
    const r = await this.#db.query<JobRow>('SELECT * FROM qtune_jobs WHERE name = $1', [name]);
    return r.rows[0] ? toJob(r.rows[0]) : undefined;
  }

  async listJobs(): Promise<JobRecord[]> {
    const r = await this.#db.query<JobRow>('SELECT * FROM qtune_jobs ORDER BY created_at, name');
    return r.rows.map(toJob);
  }

  async addJobItems(job: string, items: readonly NewJobItem[]): Promise<number> {
    if (items.length === 0) return 0;
    return this.#db.transaction(async (client) => {
      // One writer per job at a time, so that sequence numbers stay dense and ordered.
      await client.query(ADVISORY_LOCK_SQL, [`job items ${job}`]);
      const ids = items.map((it) => it.id);
      const known = await client.query<{ id: string }>(
        'SELECT id FROM qtune_job_items WHERE job = $1 AND id = ANY($2::text[])',
        [job, ids],
      );
      const seen = new Set(known.rows.map((r) => r.id));
      const max = await client.query<{ s: number | null }>(
        'SELECT MAX(seq) AS s FROM qtune_job_items WHERE job = $1',
        [job],
      );
      let seq = max.rows[0]?.s ?? 0;
      const newIds: string[] = [];
      const seqs: number[] = [];
      const bodies: string[] = [];
      const payloads: string[] = [];
      for (const it of items) {
        if (seen.has(it.id)) continue; // known, or repeated in this call: the first one counts
        seen.add(it.id);
        newIds.push(it.id);
        seqs.push(++seq);
        bodies.push(JSON.stringify(it.item));
        payloads.push(JSON.stringify(it.payload ?? null));
      }
      if (newIds.length === 0) return 0;
      await client.query(
        `INSERT INTO qtune_job_items (job, id, seq, item, payload, state)
         SELECT $1, u.id, u.seq, u.item::jsonb, u.payload::jsonb, 'new'
         FROM unnest($2::text[], $3::integer[], $4::text[], $5::text[]) AS u(id, seq, item, payload)`,
        [job, newIds, seqs, bodies, payloads],
      );
      await client.query('UPDATE qtune_jobs SET updated_at = $1 WHERE name = $2', [
        Date.now(),
        job,
      ]);
      return newIds.length;
    });
  }

  async unpublishedItems(job: string, limit: number): Promise<JobItem[]> {
    const r = await this.#db.query<ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM qtune_job_items
       WHERE job = $1 AND state = 'new' ORDER BY seq LIMIT $2`,
      [job, limit],
    );
    return r.rows.map(toItem);
  }

  async markItemsQueued(
    job: string,
    published: readonly { id: string; taskId: string }[],
  ): Promise<void> {
    if (published.length === 0) return;
    const byId = new Map<string, string>();
    for (const p of published) byId.set(p.id, p.taskId); // the last task id of an item wins
    await this.#db.query(
      `UPDATE qtune_job_items AS j SET state = 'queued', task_id = u.task_id
       FROM unnest($2::text[], $3::text[]) AS u(id, task_id)
       WHERE j.job = $1 AND j.id = u.id`,
      [job, [...byId.keys()], [...byId.values()]],
    );
  }

  async getJobItems(job: string, ids: readonly string[]): Promise<JobItem[]> {
    if (ids.length === 0) return [];
    const r = await this.#db.query<ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM qtune_job_items
       WHERE job = $1 AND id = ANY($2::text[]) ORDER BY seq`,
      [job, ids],
    );
    return r.rows.map(toItem);
  }

  async listJobItems(
    job: string,
    options: { afterSeq?: number; limit?: number } = {},
  ): Promise<JobItem[]> {
    const r = await this.#db.query<ItemRow>(
      `SELECT ${ITEM_COLUMNS} FROM qtune_job_items
       WHERE job = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
      [job, options.afterSeq ?? 0, options.limit ?? 1000],
    );
    return r.rows.map(toItem);
  }

  async jobItemCounts(job: string): Promise<JobItemCounts> {
    const r = await this.#db.query<{ state: JobItem['state']; n: number }>(
      'SELECT state, COUNT(*) AS n FROM qtune_job_items WHERE job = $1 GROUP BY state',
      [job],
    );
    const c: JobItemCounts = { total: 0, new: 0, queued: 0 };
    for (const { state, n } of r.rows) {
      c[state] = n;
      c.total += n;
    }
    return c;
  }
}
