// Peak memory of `qtune job submit` against the size of its input: JSON Lines files of
// N/4 and N items (default N = 1,000,000; about 130 bytes per item), each submitted with
// `--key name` to a fresh embedded broker and SQLite store. The submit process's peak resident
// set (VmHWM from /proc, read every 50 ms until it exits) should not grow with the input.
// Needs `npm run build` first. Usage: node bench/job-submit-memory.mjs [--items N]
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { benchOptions, printTable } from './lib.mjs';

const args = benchOptions(import.meta.url, {
  items: { type: 'string', default: '1000000' },
});
const N = Number(args.items);
if (!Number.isInteger(N) || N < 4) throw new Error('--items must be an integer >= 4');
const CLI = resolve(import.meta.dirname, '../dist/cli/main.js');
const dir = mkdtempSync(join(tmpdir(), 'qtune-bench-submit-'));

async function writeItems(path, n) {
  const out = createWriteStream(path);
  for (let i = 0; i < n; i++) {
    const line = JSON.stringify({
      name: `Company ${i}`,
      country: 'DE',
      employees: i % 5000,
      description: `A company that makes things people like, number ${i}`,
    });
    if (!out.write(line + '\n')) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

/** Peak RSS in MiB of the process, read from /proc until it is gone. */
function peakRss(pid) {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

async function submit(input, n) {
  const run = mkdtempSync(join(dir, 'run-'));
  const t0 = performance.now();
  const child = spawn(
    process.execPath,
    [CLI, 'job', 'submit', 'bench', '--input', input, '--key', 'name', '--json'],
    {
      env: {
        ...process.env,
        QTUNE_BROKER: join(run, 'broker.db'),
        QTUNE_STORE: join(run, 'store.db'),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  let peak = 0;
  const poll = setInterval(() => (peak = Math.max(peak, peakRss(child.pid) ?? 0)), 50);
  const [code] = await once(child, 'exit');
  clearInterval(poll);
  if (code !== 0) throw new Error(`qtune job submit exited with ${code}`);
  const summary = JSON.parse(out);
  if (summary.published !== n) throw new Error(`published ${summary.published} of ${n}`);
  rmSync(run, { recursive: true, force: true });
  return { peak, seconds: (performance.now() - t0) / 1000 };
}

const rows = [];
try {
  for (const n of [Math.floor(N / 4), N]) {
    const input = join(dir, `items-${n}.jsonl`);
    await writeItems(input, n);
    const { peak, seconds } = await submit(input, n);
    console.error(`${n} items: peak RSS ${peak.toFixed(0)} MiB, ${seconds.toFixed(1)} s`);
    rows.push([String(n), peak.toFixed(0), seconds.toFixed(1), Math.round(n / seconds)]);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
printTable(
  'qtune job submit: peak memory against input size (embedded broker, SQLite store)',
  ['items', 'peak RSS MiB', 'seconds', 'items/s'],
  rows,
);
