// Helpers shared by the benchmark drivers: options and --help, medians, aligned tables, and
// running a benchmark child process that ends its output with one JSON result line.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import process from 'node:process';

/** The comment a script starts with (its description and usage), without the `//` marks. */
export function usageOf(scriptUrl) {
  const lines = readFileSync(fileURLToPath(scriptUrl), 'utf8').split('\n');
  const start = lines[0]?.startsWith('#!') ? 1 : 0;
  const end = lines.findIndex((line, i) => i >= start && !line.startsWith('//'));
  return lines
    .slice(start, end === -1 ? lines.length : end)
    .join('\n')
    .replace(/^\/\/ ?/gm, '');
}

/**
 * A script's options, read with util.parseArgs (`options` in its format). `--help` prints the
 * script's leading comment and exits 0; an unknown or malformed option exits 2 with the reason.
 */
export function benchOptions(scriptUrl, options) {
  let values;
  try {
    ({ values } = parseArgs({
      options: { ...options, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (err) {
    console.error(`${err.message} (try --help)`);
    process.exit(2);
  }
  if (values.help) {
    console.log(usageOf(scriptUrl));
    process.exit(0);
  }
  return values;
}

/** Median of the numbers in `values` (other entries are ignored); null when there are none. */
export function median(values) {
  const v = values.filter((x) => typeof x === 'number').sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** Prints `rows` under `header`, the first `leftColumns` columns left-aligned, the rest right. */
export function printTable(title, header, rows, leftColumns = 1) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) =>
    cells
      .map((c, i) =>
        i < leftColumns ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]),
      )
      .join('  ');
  console.log(`\n${title}`);
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) console.log(line(row));
}

/** The last `lines` lines of `text`. */
export const tail = (text, lines = 8) => text.split('\n').slice(-lines).join('\n');

/** `x` with `digits` decimals, or a dash when missing. */
export const fmt = (x, digits = 1) => (x === null || x === undefined ? '—' : x.toFixed(digits));

/** `a / b`, or null when either is missing or `b` is 0. */
export const ratio = (a, b) =>
  a === null || b === null || a === undefined || b === undefined || b === 0 ? null : a / b;

let current; // the benchmark child now running

/** The benchmark child now running, to kill when the driver is interrupted. */
export function runningChild() {
  return current;
}

/**
 * Runs a benchmark command in `cwd` and resolves with `{ json }`, its last stdout line that is
 * a JSON object with "system" and a numeric tasksPerSec, or with `{ error, stderr, stdout }`.
 * Killed after `timeoutS` seconds.
 */
export function runJson(label, command, args, { cwd, env = {}, timeoutS }) {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    current = child;
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutS * 1000);
    child.on('error', (error) => {
      clearTimeout(timer);
      resolve({ error: `${label}: ${error.message}`, stderr });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      current = undefined;
      const line = stdout
        .split('\n')
        .reverse()
        .map((l) => l.trim())
        .find((l) => l.startsWith('{') && l.includes('"system"'));
      let json;
      try {
        json = line === undefined ? undefined : JSON.parse(line);
      } catch {
        json = undefined;
      }
      if (code === 0 && json !== undefined && typeof json.tasksPerSec === 'number')
        resolve({ json });
      else {
        const why = signal === 'SIGKILL' ? `killed after ${timeoutS} s` : `exit ${code ?? signal}`;
        resolve({
          error: `${label}: ${why}, no result line`,
          stderr: stderr.trim(),
          stdout: stdout.trim(),
        });
      }
    });
  });
}
