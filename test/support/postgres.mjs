// @ts-check
/**
 * Starts throwaway PostgreSQL servers from Debian's postgresql package for tests and
 * benchmarks: a fresh cluster (initdb) in a temp dir, listening on loopback on a free port,
 * trust authentication for the role `qtune`; stopped and removed by `stop()`. PostgreSQL
 * refuses to run as root, so under root the cluster belongs to the `postgres` system user.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './rabbitmq.mjs';
import { reapOnExit } from './reaper.mjs';

const ROOT = '/usr/lib/postgresql';
const USER = 'qtune';

/** The bin folder of the newest installed PostgreSQL, or undefined. */
function binDir() {
  if (!existsSync(ROOT)) return undefined;
  const versions = readdirSync(ROOT)
    .filter((v) => /^\d+(\.\d+)?$/.test(v) && existsSync(join(ROOT, v, 'bin', 'postgres')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length === 0 ? undefined : join(ROOT, versions[0], 'bin');
}

/** True when a PostgreSQL server binary is installed. */
export function postgresAvailable() {
  return binDir() !== undefined;
}

/** uid and gid of the `postgres` system user, to run the server as when we are root. */
function postgresUser() {
  const id = (flag) => {
    const r = spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
    if (r.status !== 0) {
      throw new Error(
        `running as root and there is no "postgres" user to run PostgreSQL as: ${r.stderr.trim()}`,
      );
    }
    return Number(r.stdout.trim());
  };
  return { uid: id('-u'), gid: id('-g') };
}

/** Runs a command to completion; rejects with its output when it exits non-zero. */
function run(cmd, args, options) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (b) => (out += b.toString()));
    p.stderr.on('data', (b) => (out += b.toString()));
    p.once('error', reject);
    p.once('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${out.trim()}`));
    });
  });
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Quotes an SQL identifier. */
function ident(name) {
  return `"${String(name).replace(/"/g, '""')}"`;
}

/**
 * Starts a PostgreSQL server in a fresh temp dir and waits until it accepts connections.
 * @param {import('./postgres.d.mts').PostgresOptions} [options]
 * @returns {Promise<import('./postgres.d.mts').PostgresServer>}
 */
export async function startPostgres(options = {}) {
  const bin = binDir();
  if (bin === undefined) throw new Error(`no PostgreSQL server found under ${ROOT}/*/bin`);
  const timeoutMs = options.timeoutMs ?? 60_000;
  const dir = mkdtempSync(join(options.dir ?? tmpdir(), 'postgres-'));
  /** @type {{ uid?: number; gid?: number }} */
  let owner = {};
  if (process.getuid?.() === 0) {
    owner = postgresUser();
    chownSync(dir, owner.uid, owner.gid);
  }
  try {
    await run(
      join(bin, 'initdb'),
      ['-D', dir, '--auth=trust', '-U', USER, '--no-sync', '-E', 'UTF8', '--no-locale'],
      { ...owner, cwd: dir, env: { ...process.env, LC_ALL: 'C' } },
    );
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  const port = await freePort();
  const durable = options.durable ?? false;
  const settings = {
    listen_addresses: '127.0.0.1',
    fsync: durable ? 'on' : 'off',
    synchronous_commit: durable ? 'on' : 'off',
    full_page_writes: durable ? 'on' : 'off',
    ...options.settings,
  };
  const args = ['-D', dir, '-p', String(port), '-k', dir];
  for (const [k, v] of Object.entries(settings)) args.push('-c', `${k}=${v}`);
  const proc = spawn(join(bin, 'postgres'), args, {
    ...owner,
    cwd: dir,
    env: { ...process.env, LC_ALL: 'C' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const keep = (b) => {
    log = (log + b.toString()).slice(-8000);
  };
  proc.stdout.on('data', keep);
  proc.stderr.on('data', keep);
  let exited = false;
  const gone = new Promise((resolve) => {
    proc.once('exit', () => {
      exited = true;
      resolve(undefined);
    });
    proc.once('error', (err) => {
      keep(String(err));
      exited = true;
      resolve(undefined);
    });
  });
  const killOnExit = () => {
    if (!exited) proc.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  // Also when this process dies without running its exit handlers (kill -9): immediate
  // shutdown, then kill, then remove the data directory.
  const reaper = reapOnExit(
    'kill -QUIT "$QTUNE_REAP_PID" 2>/dev/null; sleep 2; kill -9 "$QTUNE_REAP_PID" 2>/dev/null; rm -rf "$QTUNE_REAP_DIR"',
    { ...process.env, QTUNE_REAP_PID: String(proc.pid), QTUNE_REAP_DIR: dir },
  );

  const base = `postgres://${USER}@127.0.0.1:${port}`;
  const url = `${base}/postgres`;

  async function stop() {
    process.off('exit', killOnExit);
    if (!exited) {
      proc.kill('SIGINT'); // fast shutdown: roll back sessions, checkpoint, exit
      const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
      await gone;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
    reaper.cancel();
  }

  // Wait until it accepts connections.
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited) {
      await stop();
      throw new Error(`postgres exited before accepting connections: ${log.trim()}`);
    }
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('SELECT 1');
      await client.end();
      break;
    } catch (err) {
      await client.end().catch(() => {});
      if (Date.now() > deadline) {
        await stop();
        throw new Error(
          `postgres on port ${port} did not accept connections within ${timeoutMs} ms: ${String(err)}\n${log.trim()}`,
          { cause: err },
        );
      }
      await sleep(100);
    }
  }

  return {
    url,
    port,
    dir,
    async createDatabase(name, dbOptions = {}) {
      const client = new pg.Client({ connectionString: url });
      client.on('error', () => {});
      await client.connect();
      try {
        const icu = dbOptions.icuLocale;
        await client.query(
          `CREATE DATABASE ${ident(name)} OWNER ${ident(USER)}` +
            (icu === undefined
              ? ''
              : ` TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '${icu.replace(/'/g, "''")}'`),
        );
      } finally {
        await client.end();
      }
      return `${base}/${encodeURIComponent(name)}`;
    },
    stop,
  };
}
