import type Database from 'better-sqlite3';
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
import { historyEntryOf, toExperiment, toTrial } from '../rows.js';

/** Tables of the experiment part of the store. */
export const EXPERIMENT_DDL = `
CREATE TABLE IF NOT EXISTS qtune_experiments (
  name       TEXT PRIMARY KEY,
  spec       TEXT NOT NULL,
  status     TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS qtune_trials (
  experiment  TEXT NOT NULL,
  number      INTEGER NOT NULL,
  params      TEXT NOT NULL,
  status      TEXT NOT NULL,
  task_id     TEXT NOT NULL,
  value       REAL,
  step        INTEGER,
  metrics     TEXT,
  error       TEXT,
  attempt     INTEGER,
  worker      TEXT,
  created_at  INTEGER NOT NULL,
  started_at  INTEGER,
  finished_at INTEGER,
  PRIMARY KEY (experiment, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS qtune_reports (
  experiment TEXT NOT NULL,
  number     INTEGER NOT NULL,
  step       INTEGER NOT NULL,
  value      REAL NOT NULL,
  metrics    TEXT,
  decision   TEXT NOT NULL,
  at         INTEGER NOT NULL,
  PRIMARY KEY (experiment, number, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS qtune_history (
  seq        INTEGER PRIMARY KEY AUTOINCREMENT,
  experiment TEXT NOT NULL,
  kind       TEXT NOT NULL,
  number     INTEGER NOT NULL,
  step       INTEGER,
  value      REAL,
  status     TEXT
);
CREATE INDEX IF NOT EXISTS qtune_history_experiment ON qtune_history(experiment, seq);
`;

interface TrialRow {
  experiment: string;
  number: number;
  params: string;
  status: TrialStatus;
  task_id: string;
  value: number | null;
  step: number | null;
  metrics: string | null;
  error: string | null;
  attempt: number | null;
  worker: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
}

function trialOf(row: TrialRow): TrialRecord {
  return toTrial({
    ...row,
    params: JSON.parse(row.params) as TrialRecord['params'],
    metrics: row.metrics === null ? null : (JSON.parse(row.metrics) as Record<string, unknown>),
    worker: row.worker === null ? null : (JSON.parse(row.worker) as TrialRecord['worker']),
  });
}

interface ExperimentRow {
  name: string;
  spec: string;
  status: ExperimentStatus;
  created_at: number;
  updated_at: number;
}

function experimentOf(row: ExperimentRow): ExperimentRecord {
  return toExperiment({ ...row, spec: JSON.parse(row.spec) as unknown });
}

/** The experiment part of {@link SqliteStore}: each call is one transaction. */
export class SqliteExperiments implements ExperimentStore {
  readonly #db: Database.Database;
  readonly #stmts;

  constructor(db: Database.Database) {
    this.#db = db;
    this.#stmts = {
      insertExperiment: db.prepare(
        'INSERT INTO qtune_experiments (name, spec, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
      ),
      getExperiment: db.prepare<[string], ExperimentRow>(
        'SELECT * FROM qtune_experiments WHERE name = ?',
      ),
      experimentStatus: db.prepare<[string], { status: ExperimentStatus }>(
        'SELECT status FROM qtune_experiments WHERE name = ?',
      ),
      listExperiments: db.prepare<[], ExperimentRow>(
        'SELECT * FROM qtune_experiments ORDER BY created_at, name',
      ),
      setStatus: db.prepare(
        'UPDATE qtune_experiments SET status = ?, updated_at = ? WHERE name = ?',
      ),
      deleteExperiment: db.prepare('DELETE FROM qtune_experiments WHERE name = ?'),
      deleteTrials: db.prepare('DELETE FROM qtune_trials WHERE experiment = ?'),
      deleteReports: db.prepare('DELETE FROM qtune_reports WHERE experiment = ?'),
      deleteHistory: db.prepare('DELETE FROM qtune_history WHERE experiment = ?'),
      addTrial: db.prepare(
        `INSERT INTO qtune_trials (experiment, number, params, status, task_id, created_at)
         VALUES (?, ?, ?, 'pending', ?, ?) ON CONFLICT DO NOTHING`,
      ),
      markRunning: db.prepare(
        "UPDATE qtune_trials SET status = 'running' WHERE experiment = ? AND number = ? AND status = 'pending'",
      ),
      getReport: db.prepare<[string, number, number], { decision: string }>(
        'SELECT decision FROM qtune_reports WHERE experiment = ? AND number = ? AND step = ?',
      ),
      insertReport: db.prepare(
        'INSERT INTO qtune_reports (experiment, number, step, value, metrics, decision, at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      touchTrial: db.prepare(
        'UPDATE qtune_trials SET step = ?, value = ?, started_at = COALESCE(started_at, ?) WHERE experiment = ? AND number = ?',
      ),
      finishTrial: db.prepare(
        `UPDATE qtune_trials SET status = @status, value = COALESCE(@value, value), step = COALESCE(@step, step),
           metrics = @metrics, error = @error, attempt = @attempt, worker = @worker,
           started_at = COALESCE(@startedAt, started_at), finished_at = @finishedAt
         WHERE experiment = @experiment AND number = @number AND status IN ('pending', 'running')`,
      ),
      appendHistory: db.prepare(
        'INSERT INTO qtune_history (experiment, kind, number, step, value, status) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      getTrial: db.prepare<[string, number], TrialRow>(
        'SELECT * FROM qtune_trials WHERE experiment = ? AND number = ?',
      ),
      listTrials: db.prepare<[string], TrialRow>(
        'SELECT * FROM qtune_trials WHERE experiment = ? ORDER BY number',
      ),
      history: db.prepare<
        [string],
        {
          seq: number;
          kind: 'report' | 'finish';
          number: number;
          step: number | null;
          value: number | null;
          status: string | null;
        }
      >(
        'SELECT seq, kind, number, step, value, status FROM qtune_history WHERE experiment = ? ORDER BY seq',
      ),
      reports: db.prepare<[string, number], { step: number; value: number; at: number }>(
        'SELECT step, value, at FROM qtune_reports WHERE experiment = ? AND number = ? ORDER BY step',
      ),
      counts: db.prepare<[string], { status: TrialStatus; n: number }>(
        'SELECT status, COUNT(*) AS n FROM qtune_trials WHERE experiment = ? GROUP BY status',
      ),
    };
  }

  async createExperiment(name: string, spec: unknown, now = Date.now()): Promise<ExperimentRecord> {
    const r = this.#stmts.insertExperiment.run(name, JSON.stringify(spec), 'running', now, now);
    if (r.changes === 0)
      throw new InputError(
        `experiment "${name}" already exists (resume it, or choose another name)`,
      );
    return { name, spec, status: 'running', createdAt: now, updatedAt: now };
  }

  async getExperiment(name: string): Promise<ExperimentRecord | undefined> {
    const row = this.#stmts.getExperiment.get(name);
    return row ? experimentOf(row) : undefined;
  }

  async experimentStatus(name: string): Promise<ExperimentStatus | undefined> {
    return this.#stmts.experimentStatus.get(name)?.status;
  }

  async listExperiments(): Promise<ExperimentRecord[]> {
    return this.#stmts.listExperiments.all().map(experimentOf);
  }

  async setExperimentStatus(name: string, status: ExperimentStatus): Promise<void> {
    this.#stmts.setStatus.run(status, Date.now(), name);
  }

  async deleteExperiment(name: string): Promise<boolean> {
    return this.#db
      .transaction(() => {
        if (this.#stmts.deleteExperiment.run(name).changes === 0) return false;
        this.#stmts.deleteTrials.run(name);
        this.#stmts.deleteReports.run(name);
        this.#stmts.deleteHistory.run(name);
        return true;
      })
      .immediate();
  }

  async addTrial(trial: NewTrial): Promise<boolean> {
    const r = this.#stmts.addTrial.run(
      trial.experiment,
      trial.number,
      JSON.stringify(trial.params),
      trial.taskId,
      trial.createdAt,
    );
    return r.changes === 1;
  }

  async markRunning(experiment: string, numbers: readonly number[]): Promise<void> {
    this.#db.transaction(() => {
      for (const n of numbers) this.#stmts.markRunning.run(experiment, n);
    })();
  }

  async recordReport(
    experiment: string,
    report: NewReport,
  ): Promise<{ duplicate: boolean; decision: string }> {
    return this.#db
      .transaction(() => {
        const existing = this.#stmts.getReport.get(experiment, report.number, report.step);
        if (existing) return { duplicate: true, decision: existing.decision };
        this.#stmts.insertReport.run(
          experiment,
          report.number,
          report.step,
          report.value,
          report.metrics === undefined ? null : JSON.stringify(report.metrics),
          report.decision,
          report.at,
        );
        this.#stmts.touchTrial.run(report.step, report.value, report.at, experiment, report.number);
        this.#stmts.appendHistory.run(
          experiment,
          'report',
          report.number,
          report.step,
          report.value,
          null,
        );
        return { duplicate: false, decision: report.decision };
      })
      .immediate();
  }

  async finishTrial(experiment: string, number: number, finish: TrialFinish): Promise<boolean> {
    return this.#db
      .transaction(() => {
        const r = this.#stmts.finishTrial.run({
          experiment,
          number,
          status: finish.status,
          value: finish.value ?? null,
          step: finish.step ?? null,
          metrics: finish.metrics === undefined ? null : JSON.stringify(finish.metrics),
          error: finish.error ?? null,
          attempt: finish.attempt ?? null,
          worker: finish.worker === undefined ? null : JSON.stringify(finish.worker),
          startedAt: finish.startedAt ?? null,
          finishedAt: finish.finishedAt,
        });
        if (r.changes === 0) return false;
        const row = this.#stmts.getTrial.get(experiment, number)!;
        this.#stmts.appendHistory.run(
          experiment,
          'finish',
          number,
          row.step,
          row.value,
          finish.status,
        );
        return true;
      })
      .immediate();
  }

  async getTrial(experiment: string, number: number): Promise<TrialRecord | undefined> {
    const row = this.#stmts.getTrial.get(experiment, number);
    return row ? trialOf(row) : undefined;
  }

  async listTrials(experiment: string, statuses?: readonly TrialStatus[]): Promise<TrialRecord[]> {
    const rows = this.#stmts.listTrials.all(experiment).map(trialOf);
    return statuses === undefined ? rows : rows.filter((t) => statuses.includes(t.status));
  }

  async history(experiment: string): Promise<HistoryEntry[]> {
    return this.#stmts.history.all(experiment).map(historyEntryOf);
  }

  async reports(
    experiment: string,
    number: number,
  ): Promise<{ step: number; value: number; at: number }[]> {
    return this.#stmts.reports.all(experiment, number);
  }

  async counts(experiment: string): Promise<TrialCounts> {
    const c: TrialCounts = { pending: 0, running: 0, complete: 0, pruned: 0, failed: 0, total: 0 };
    for (const { status, n } of this.#stmts.counts.all(experiment)) {
      c[status] = n;
      c.total += n;
    }
    return c;
  }
}
