/**
 * The timeline of an experiment's trials per worker (a Gantt chart), sized for a plot whatever
 * the number of trials. A trial's bar runs from its start (its first report, or the result's
 * start) to its finish (now while it runs) on the row of the worker that produced its result
 * (host and pid); trials without one (in flight: the worker is known only from the result; or
 * dead-lettered) share one row. Only a trial's final attempt is stored: a bar with attempt > 1
 * is marked as retried.
 *
 * A window of at most {@link TIMELINE_BARS} trials gets one bar per trial, with lanes where a
 * worker ran trials at once. A larger one is cut into {@link TIMELINE_COLUMNS} columns of time,
 * and each row gets one span per column in which it started trials, counting them by status
 * (so a row has at most that many spans, whatever the number of trials); rows beyond
 * {@link TIMELINE_ROWS} (the least busy) are merged into one. Pure and deterministic.
 */
import type { TrialRecord, TrialStatus } from '../store/experiments.js';

/** Most trials a window shows as bars of their own. */
export const TIMELINE_BARS = 500;
/** Columns of a merged window: the finest span a merged row shows is one column. */
export const TIMELINE_COLUMNS = 200;
/** Most worker rows; the least busy beyond them share one row. */
export const TIMELINE_ROWS = 30;

/** One trial's bar. */
export interface TimelineBar {
  number: number;
  status: TrialStatus;
  /** Attempt of its final result (1 unless retried). */
  attempt: number;
  start: number;
  end: number;
  /** Lane within its row (trials run at once by one worker get lanes of their own). */
  lane: number;
}

/** The trials a row started in one column of a merged window, counted by status. */
export interface TimelineSpan {
  start: number;
  end: number;
  trials: number;
  complete: number;
  pruned: number;
  failed: number;
  running: number;
  /** Trials whose final attempt was not their first. */
  retried: number;
}

export interface TimelineRow {
  /** `host pid N`; null for the row of trials without a recorded worker; `other workers (K)` for merged rows. */
  worker: string | null;
  host?: string;
  pid?: number;
  /** Trials of this row in the window. */
  trials: number;
  lanes: number;
  /** Bars (`merged: false`) or spans (`merged: true`), by start. */
  bars: (TimelineBar | TimelineSpan)[];
}

export interface Timeline {
  from: number;
  to: number;
  /** Trials in the window (bars or counted in spans). */
  total: number;
  merged: boolean;
  rows: TimelineRow[];
}

export interface TimelineOptions {
  /** The time of now, for the end of running trials (default: Date.now()). */
  now?: number;
  /** Window start in ms (default: the earliest start of the chosen trials). */
  from?: number;
  /** Window end in ms (default: the latest end of the chosen trials). */
  to?: number;
  /** Only the `last` highest-numbered trials set the default window (default: all). */
  last?: number;
}

interface Placed {
  number: number;
  status: TrialStatus;
  attempt: number;
  start: number;
  end: number;
  key: string;
  host?: string;
  pid?: number;
}

const NO_WORKER = '\u0000';

function placed(t: TrialRecord, now: number): Placed | undefined {
  // Pending trials were never published for a worker: nothing ran.
  if (t.status === 'pending') return undefined;
  const start = t.startedAt ?? t.createdAt;
  const end = t.finishedAt ?? (t.status === 'running' ? now : start);
  return {
    number: t.number,
    status: t.status,
    attempt: t.attempt ?? 1,
    start,
    end: Math.max(start, end),
    key: t.worker ? `${t.worker.host} pid ${t.worker.pid}` : NO_WORKER,
    ...(t.worker && { host: t.worker.host, pid: t.worker.pid }),
  };
}

/** Greedy lanes: each bar goes to the first lane free at its start. Returns the lane count. */
function assignLanes(bars: TimelineBar[]): number {
  const ends: number[] = [];
  for (const b of bars) {
    let lane = ends.findIndex((e) => e <= b.start);
    if (lane < 0) lane = ends.push(0) - 1;
    ends[lane] = b.end;
    b.lane = lane;
  }
  return Math.max(1, ends.length);
}

/**
 * Spans of `bars` (sorted by start) by column of the window: each counts the trials that started
 * in its column and runs from the first start to the last end among them.
 */
function spansOf(bars: readonly Placed[], from: number, width: number): TimelineSpan[] {
  const byColumn = new Map<number, TimelineSpan>();
  for (const b of bars) {
    const col = Math.max(0, Math.min(TIMELINE_COLUMNS - 1, Math.floor((b.start - from) / width)));
    let span = byColumn.get(col);
    if (!span) {
      span = {
        start: b.start,
        end: b.end,
        trials: 0,
        complete: 0,
        pruned: 0,
        failed: 0,
        running: 0,
        retried: 0,
      };
      byColumn.set(col, span);
    }
    span.start = Math.min(span.start, b.start);
    span.end = Math.max(span.end, b.end);
    span.trials++;
    if (b.status === 'complete' || b.status === 'pruned' || b.status === 'failed') span[b.status]++;
    else span.running++;
    if (b.attempt > 1) span.retried++;
  }
  return [...byColumn.entries()].sort((a, b) => a[0] - b[0]).map(([, span]) => span);
}

/** The timeline of `trials` over a window (see the module's header). */
export function timelineOf(
  trials: readonly TrialRecord[],
  options: TimelineOptions = {},
): Timeline {
  const now = options.now ?? Date.now();
  const all = trials.map((t) => placed(t, now)).filter((p): p is Placed => p !== undefined);
  const chosen =
    options.last !== undefined
      ? [...all].sort((a, b) => b.number - a.number).slice(0, options.last)
      : all;
  const from = options.from ?? (chosen.length ? Math.min(...chosen.map((p) => p.start)) : now);
  const to = options.to ?? (chosen.length ? Math.max(...chosen.map((p) => p.end)) : now);
  const inside = all.filter((p) => p.end >= from && p.start <= to);
  const merged = inside.length > TIMELINE_BARS;

  const byKey = new Map<string, Placed[]>();
  for (const p of inside) {
    let list = byKey.get(p.key);
    if (!list) byKey.set(p.key, (list = []));
    list.push(p);
  }
  // Busiest first to choose who keeps a row; rows then by worker, the worker-less row last.
  let groups = [...byKey.entries()].sort((a, b) => b[1].length - a[1].length);
  let others: Placed[] = [];
  if (groups.length > TIMELINE_ROWS) {
    others = groups.slice(TIMELINE_ROWS - 1).flatMap(([, list]) => list);
    groups = groups.slice(0, TIMELINE_ROWS - 1);
  }
  groups.sort(([a], [b]) =>
    a === NO_WORKER ? 1 : b === NO_WORKER ? -1 : a < b ? -1 : a > b ? 1 : 0,
  );
  const width = Math.max(1, to - from) / TIMELINE_COLUMNS;
  const rowOf = (
    worker: string | null,
    list: Placed[],
    spans: boolean,
    host?: string,
    pid?: number,
  ): TimelineRow => {
    const sorted = [...list].sort((a, b) => a.start - b.start || a.number - b.number);
    let bars: (TimelineBar | TimelineSpan)[];
    let lanes = 1;
    if (spans) {
      bars = spansOf(sorted, from, width);
    } else {
      const own = sorted.map((p): TimelineBar => ({
        number: p.number,
        status: p.status,
        attempt: p.attempt,
        start: p.start,
        end: p.end,
        lane: 0,
      }));
      lanes = assignLanes(own);
      bars = own;
    }
    return {
      worker,
      ...(host !== undefined && { host }),
      ...(pid !== undefined && { pid }),
      trials: list.length,
      lanes,
      bars,
    };
  };
  const rows: TimelineRow[] = groups.map(([key, list]) =>
    key === NO_WORKER
      ? rowOf(null, list, merged)
      : rowOf(key, list, merged, list[0]!.host, list[0]!.pid),
  );
  if (others.length > 0) {
    const workers = new Set(others.map((p) => p.key)).size;
    rows.push(rowOf(`other workers (${workers})`, others, true));
  }
  return { from, to, total: inside.length, merged, rows };
}
