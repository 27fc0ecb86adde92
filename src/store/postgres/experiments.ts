import { InputError } from '../../protocol/errors.js';
import type {
  ExperimentRecord,
  ExperimentStatus,
  ExperimentStore,
  HistoryEntry,
  NewReport,
  NewTrial,
  TrialCounts,
  TrialFinish,
  TrialRecord,
  TrialStatus,
} from '../experiments.js';
import type { PgDb } from './db.js';
import {
  historyEntryOf,
  toExperiment,
  toTrial,
  type ExperimentRow,
  type HistoryRow,
  type TrialRow,
} from '../rows.js';

/** JSON text for a `jsonb` parameter, or SQL NULL for undefined. */
function json(value: unknown): string | null {
  return value === undefined ? null : JSON.stringify(value);
}

const APPEND_HISTORY = `INSERT INTO qtune_history (experiment, kind, number, step, value, status)
  VALUES ($1, $2, $3, $4, $5, $6)`;

/** The experiment part of {@link PostgresStore}: each call is one transaction. */
export class PgExperiments implements ExperimentStore {
  readonly #db: PgDb;

  constructor(db: PgDb) {
    this.#db = db;
  }

  async createExperiment(name: string, spec: unknown, now = Date.now()): Promise<ExperimentRecord> {
    const r = await this.#db.query(
      `INSERT INTO qtune_experiments (name, spec, status, created_at, updated_at)
       VALUES ($1, $2::jsonb, 'running', $3, $3) ON CONFLICT DO NOTHING`,
      [name, JSON.stringify(spec), now],
    );
    if (r.rowCount === 0) {
      throw new InputError(
        `experiment "${name}" already exists (resume it, or choose another name)`,
      );
    }
    return { name, spec, status: 'running', createdAt: now, updatedAt: now };
  }

  async getExperiment(name: string): Promise<ExperimentRecord | undefined> {
    const r = await this.#db.query<ExperimentRow>(
      'SELECT * FROM qtune_experiments WHERE name = $1',
      [name],
    );
    return r.rows[0] ? toExperiment(r.rows[0]) : undefined;
  }

  async experimentStatus(name: string): Promise<ExperimentStatus | undefined> {
    const r = await this.#db.query<{ status: ExperimentStatus }>(
      'SELECT status FROM qtune_experiments WHERE name = $1',
      [name],
    );
    return r.rows[0]?.status;
  }

  async listExperiments(): Promise<ExperimentRecord[]> {
    const r = await this.#db.query<ExperimentRow>(
      'SELECT * FROM qtune_experiments ORDER BY created_at, name',
    );
    return r.rows.map(toExperiment);
  }

  async setExperimentStatus(name: string, status: ExperimentStatus): Promise<void> {
    await this.#db.query(
      'UPDATE qtune_experiments SET status = $1, updated_at = $2 WHERE name = $3',
      [status, Date.now(), name],
    );
  }

  async deleteExperiment(name: string): Promise<boolean> {
    return this.#db.transaction(async (client) => {
      const r = await client.query('DELETE FROM qtune_experiments WHERE name = $1', [name]);
      if (r.rowCount === 0) return false;
      for (const table of ['qtune_trials', 'qtune_reports', 'qtune_history']) {
        await client.query(`DELETE FROM ${table} WHERE experiment = $1`, [name]);
      }
      return true;
    });
  }

  async addTrial(trial: NewTrial): Promise<boolean> {
    const r = await this.#db.query(
      `INSERT INTO qtune_trials (experiment, number, params, status, task_id, created_at)
       VALUES ($1, $2, $3::jsonb, 'pending', $4, $5) ON CONFLICT DO NOTHING`,
      [trial.experiment, trial.number, JSON.stringify(trial.params), trial.taskId, trial.createdAt],
    );
    return r.rowCount === 1;
  }

  async markRunning(experiment: string, numbers: readonly number[]): Promise<void> {
    if (numbers.length === 0) return;
    await this.#db.query(
      `UPDATE qtune_trials SET status = 'running'
       WHERE experiment = $1 AND number = ANY($2::integer[]) AND status = 'pending'`,
      [experiment, numbers],
    );
  }

  async recordReport(
    experiment: string,
    report: NewReport,
  ): Promise<{ duplicate: boolean; decision: string }> {
    return this.#db.transaction(async (client) => {
      // A concurrent insert of the same step makes this one wait for it, then do nothing.
      const inserted = await client.query(
        `INSERT INTO qtune_reports (experiment, number, step, value, metrics, decision, at)
         VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7) ON CONFLICT DO NOTHING`,
        [
          experiment,
          report.number,
          report.step,
          report.value,
          json(report.metrics),
          report.decision,
          report.at,
        ],
      );
      if (inserted.rowCount === 0) {
        const existing = await client.query<{ decision: string }>(
          'SELECT decision FROM qtune_reports WHERE experiment = $1 AND number = $2 AND step = $3',
          [experiment, report.number, report.step],
        );
        return { duplicate: true, decision: existing.rows[0]!.decision };
      }
      await client.query(
        `UPDATE qtune_trials SET step = $1, value = $2, started_at = COALESCE(started_at, $3)
         WHERE experiment = $4 AND number = $5`,
        [report.step, report.value, report.at, experiment, report.number],
      );
      await client.query(APPEND_HISTORY, [
        experiment,
        'report',
        report.number,
        report.step,
        report.value,
        null,
      ]);
      return { duplicate: false, decision: report.decision };
    });
  }

  async finishTrial(experiment: string, number: number, finish: TrialFinish): Promise<boolean> {
    return this.#db.transaction(async (client) => {
      // A concurrent finish of the same trial makes this one wait, then match no row.
      const r = await client.query<{ step: number | null; value: number | null }>(
        `UPDATE qtune_trials SET status = $3, value = COALESCE($4, value), step = COALESCE($5, step),
           metrics = $6::jsonb, error = $7, attempt = $8, worker = $9::jsonb,
           started_at = COALESCE($10, started_at), finished_at = $11
         WHERE experiment = $1 AND number = $2 AND status IN ('pending', 'running')
         RETURNING step, value`,
        [
          experiment,
          number,
          finish.status,
          finish.value ?? null,
          finish.step ?? null,
          json(finish.metrics),
          finish.error ?? null,
          finish.attempt ?? null,
          json(finish.worker),
          finish.startedAt ?? null,
          finish.finishedAt,
        ],
      );
      const row = r.rows[0];
      if (row === undefined) return false;
      await client.query(APPEND_HISTORY, [
        experiment,
        'finish',
        number,
        row.step,
        row.value,
        finish.status,
      ]);
      return true;
    });
  }

  async getTrial(experiment: string, number: number): Promise<TrialRecord | undefined> {
    const r = await this.#db.query<TrialRow>(
      'SELECT * FROM qtune_trials WHERE experiment = $1 AND number = $2',
      [experiment, number],
    );
    return r.rows[0] ? toTrial(r.rows[0]) : undefined;
  }

  async listTrials(experiment: string, statuses?: readonly TrialStatus[]): Promise<TrialRecord[]> {
    const r = await this.#db.query<TrialRow>(
      `SELECT * FROM qtune_trials
       WHERE experiment = $1 AND ($2::text[] IS NULL OR status = ANY($2::text[]))
       ORDER BY number`,
      [experiment, statuses ?? null],
    );
    return r.rows.map(toTrial);
  }

  async history(experiment: string): Promise<HistoryEntry[]> {
    const r = await this.#db.query<HistoryRow>(
      `SELECT seq, kind, number, step, value, status FROM qtune_history
       WHERE experiment = $1 ORDER BY seq`,
      [experiment],
    );
    return r.rows.map(historyEntryOf);
  }

  async reports(
    experiment: string,
    number: number,
  ): Promise<{ step: number; value: number; at: number }[]> {
    const r = await this.#db.query<{ step: number; value: number; at: number }>(
      `SELECT step, value, at FROM qtune_reports
       WHERE experiment = $1 AND number = $2 ORDER BY step`,
      [experiment, number],
    );
    return r.rows;
  }

  async counts(experiment: string): Promise<TrialCounts> {
    const r = await this.#db.query<{ status: TrialStatus; n: number }>(
      'SELECT status, COUNT(*) AS n FROM qtune_trials WHERE experiment = $1 GROUP BY status',
      [experiment],
    );
    const c: TrialCounts = { pending: 0, running: 0, complete: 0, pruned: 0, failed: 0, total: 0 };
    for (const { status, n } of r.rows) {
      c[status] = n;
      c.total += n;
    }
    return c;
  }
}
