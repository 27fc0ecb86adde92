import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';

/** One sample line of a Prometheus text exposition: name, labels and value. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the samples of a Prometheus text exposition (comments skipped). */
export function parseSamples(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/u.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/gu)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return samples;
}

/** The value of the one sample named `name` whose labels include `labels`. */
export function valueOf(
  samples: Sample[],
  name: string,
  labels: Record<string, string> = {},
): number {
  const found = samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (found.length !== 1) {
    throw new Error(`${found.length} samples ${name}${JSON.stringify(labels)}`);
  }
  return found[0]!.value;
}

/**
 * Scrapes a metrics URL (with a bearer token when given): expects 200 in Prometheus' text format
 * and returns its samples.
 */
export async function scrapeSamples(url: string, token?: string): Promise<Sample[]> {
  const res = await fetch(
    url,
    token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } },
  );
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  return parseSamples(await res.text());
}

const DOC = join(import.meta.dirname, '../../docs/metrics.md');

/** The rows of the table under `## <heading>` in docs/metrics.md: metric name → type. */
export function documentedMetrics(heading: string): Map<string, string> {
  const text = readFileSync(DOC, 'utf8');
  const start = text.indexOf(`\n## ${heading}`);
  expect(start, `docs/metrics.md has a "## ${heading}" section`).toBeGreaterThan(-1);
  const end = text.indexOf('\n## ', start + 1);
  const rows = new Map<string, string>();
  for (const m of text
    .slice(start, end === -1 ? undefined : end)
    .matchAll(/^\|\s*`(\w+)`\s*\|\s*(\w+)\s*\|/gmu)) {
    rows.set(m[1]!, m[2]!);
  }
  return rows;
}
