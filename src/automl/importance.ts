/**
 * Parameter importance of finished trials as first-order (main-effect) variance shares: for each
 * parameter, the trials are split into bins of its value (quantile bins of a number, one bin per
 * value of a categorical or boolean), and its importance is the variance of the bins' mean
 * objective (weighted by bin size) divided by the objective's total variance — the correlation
 * ratio η², an estimate of the first-order Sobol index that fANOVA also reports as a main effect,
 * here without a surrogate model. Shares are normalized to sum to 1. Pure and deterministic.
 */

/** One finished trial: its params and its objective value. */
export interface ImportanceTrial {
  params: Readonly<Record<string, number | string | boolean>>;
  value: number;
}

export interface ParamImportance {
  param: string;
  /** Share of the explained variance, 0..1; the shares of all params sum to 1 (or are all 0). */
  importance: number;
}

/** Quantile bins per numeric parameter (default when fewer trials: trials / 5, at least 2). */
const DEFAULT_BINS = 10;

/** Main-effect importance of each parameter, most important first (ties by name). */
export function paramImportance(
  trials: readonly ImportanceTrial[],
  bins = DEFAULT_BINS,
): ParamImportance[] {
  const names = [...new Set(trials.flatMap((t) => Object.keys(t.params)))].sort();
  const usable = trials.filter((t) => Number.isFinite(t.value));
  const n = usable.length;
  const mean = usable.reduce((s, t) => s + t.value, 0) / Math.max(1, n);
  const total = usable.reduce((s, t) => s + (t.value - mean) ** 2, 0) / Math.max(1, n);
  const raw = names.map((param) => {
    if (n < 2 || total === 0) return { param, share: 0 };
    const groups = groupsOf(usable, param, Math.max(2, Math.min(bins, Math.floor(n / 5))));
    let between = 0;
    for (const g of groups) {
      const m = g.reduce((s, v) => s + v, 0) / g.length;
      between += g.length * (m - mean) ** 2;
    }
    return { param, share: between / n / total };
  });
  const sum = raw.reduce((s, r) => s + r.share, 0);
  return raw
    .map((r) => ({ param: r.param, importance: sum > 0 ? r.share / sum : 0 }))
    .sort((a, b) => b.importance - a.importance || (a.param < b.param ? -1 : 1));
}

/** The objective values of `trials` grouped by bins of `param`; trials without it are left out. */
function groupsOf(trials: readonly ImportanceTrial[], param: string, bins: number): number[][] {
  const present = trials.filter((t) => t.params[param] !== undefined);
  if (present.every((t) => typeof t.params[param] === 'number')) {
    const sorted = [...present].sort(
      (a, b) => (a.params[param] as number) - (b.params[param] as number),
    );
    const groups: number[][] = [];
    const size = sorted.length / bins;
    for (let b = 0; b < bins; b++) {
      const g = sorted.slice(Math.round(b * size), Math.round((b + 1) * size)).map((t) => t.value);
      if (g.length > 0) groups.push(g);
    }
    return groups;
  }
  const byValue = new Map<string, number[]>();
  for (const t of present) {
    const key = String(t.params[param]);
    let g = byValue.get(key);
    if (!g) byValue.set(key, (g = []));
    g.push(t.value);
  }
  return [...byValue.values()];
}
