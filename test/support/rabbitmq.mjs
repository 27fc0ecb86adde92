// @ts-check
/**
 * Starts throwaway RabbitMQ nodes from Debian's rabbitmq-server package for tests and
 * benchmarks: each node on loopback with its own node name, AMQP, distribution and epmd ports,
 * data and log directories, and Erlang cookie; stopped and removed by `stop()`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { reapOnExit } from './reaper.mjs';

const BIN = '/usr/lib/rabbitmq/bin';
/** Erlang flags that stop the node's schedulers from busy-waiting when they run out of work. */
export const SCHEDULER_NO_BUSY_WAIT = '+sbwt none +sbwtdcpu none +sbwtdio none';

/** True when the rabbitmq-server package is installed. */
export function rabbitAvailable() {
  return existsSync(join(BIN, 'rabbitmq-server'));
}

/** A TCP port that was free a moment ago. */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = srv.address().port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Cleanup for a node whose starter died without stopping it: kill its process group and its VM,
 * stop its epmd, remove its directory.
 */
const REAP_NODE = [
  'kill -9 "-$QTUNE_REAP_PGID" 2>/dev/null',
  'pid=$(cat "$QTUNE_REAP_DIR/pid" 2>/dev/null) && kill -9 "$pid" 2>/dev/null',
  // epmd refuses to stop while it still counts the node alive: give it a moment to notice.
  'sleep 1; epmd -kill >/dev/null 2>&1',
  'rm -rf "$QTUNE_REAP_DIR"',
].join('; ');

export class RabbitNode {
  #env;
  #proc;
  /** @type {{ cancel(): void } | undefined} */
  #reaper;

  /** Use {@link RabbitNode.create}. */
  constructor(name, port, distPort, dir, env) {
    /** Full node name, `<short>@localhost`. */
    this.name = name;
    /** AMQP port on 127.0.0.1. */
    this.port = port;
    /** Erlang distribution port. */
    this.distPort = distPort;
    /** The node's directory: config, cookie, data, logs. */
    this.dir = dir;
    this.#env = env;
  }

  /** An AMQP URL for this node (guest/guest on the default vhost). */
  get url() {
    return `amqp://guest:guest@127.0.0.1:${this.port}`;
  }

  /** Prepares a node's directories and configuration; `start()` runs it. */
  static async create(options = {}) {
    const port = await freePort();
    const distPort = await freePort();
    const epmdPort = options.epmdPort ?? (await freePort());
    const short = options.name ?? `qtune${port}`;
    const name = `${short}@localhost`;
    const dir = mkdtempSync(join(options.dir ?? tmpdir(), `rabbit-${short}-`));
    mkdirSync(join(dir, 'log'), { recursive: true });
    const cookie = options.cookie ?? `QTUNE${Math.random().toString(36).slice(2).toUpperCase()}`;
    writeFileSync(join(dir, '.erlang.cookie'), cookie, { mode: 0o400 });
    writeFileSync(
      join(dir, 'rabbitmq.conf'),
      [
        `listeners.tcp.default = 127.0.0.1:${port}`,
        'loopback_users = none',
        'log.console = false',
        'log.file.level = warning',
        ...(options.config ?? []),
      ].join('\n') + '\n',
    );
    writeFileSync(join(dir, 'enabled_plugins'), `[${(options.plugins ?? []).join(',')}].\n`);
    const advanced = Object.entries(options.advanced ?? {});
    if (advanced.length > 0) {
      // Settings rabbitmq.conf has no key for, as the rabbit application's environment.
      const terms = advanced.map(([key, value]) => `{${key}, ${value}}`).join(', ');
      writeFileSync(join(dir, 'advanced.config'), `[{rabbit, [${terms}]}].\n`);
    }
    const env = {
      ...process.env,
      HOME: dir,
      RABBITMQ_NODENAME: name,
      RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
      RABBITMQ_NODE_PORT: String(port),
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
      RABBITMQ_LOG_BASE: join(dir, 'log'),
      RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
      RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
      ...(advanced.length > 0 && { RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, 'advanced.config') }),
      RABBITMQ_PID_FILE: join(dir, 'pid'),
      ERL_EPMD_PORT: String(epmdPort),
      ERL_EPMD_ADDRESS: '127.0.0.1',
      // The node shares this machine's few cores with its clients: Erlang schedulers that spin
      // while waiting for work take CPU time the clients need (RabbitMQ's runtime guide,
      // "scheduler busy waiting"). An explicit value in the environment, even empty, wins.
      RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS:
        process.env.RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS ?? SCHEDULER_NO_BUSY_WAIT,
    };
    return new RabbitNode(name, port, distPort, dir, env);
  }

  /** Starts the node and waits until it accepts connections (about 5–10 s). */
  async start(timeoutMs = 90_000) {
    this.#proc = spawn(join(BIN, 'rabbitmq-server'), [], {
      env: this.#env,
      stdio: 'ignore',
      detached: true,
    });
    this.#proc.unref();
    this.#reaper?.cancel();
    this.#reaper = reapOnExit(REAP_NODE, {
      ...this.#env,
      QTUNE_REAP_PGID: String(this.#proc.pid),
      QTUNE_REAP_DIR: this.dir,
    });
    await this.ctl(
      ['wait', join(this.dir, 'pid'), '--timeout', String(Math.ceil(timeoutMs / 1000))],
      timeoutMs + 5000,
    );
  }

  /** Runs rabbitmqctl (or another CLI tool in the package) against this node. */
  async ctl(args, timeoutMs = 60_000, tool = 'rabbitmqctl') {
    return new Promise((resolve, reject) => {
      const p = spawn(join(BIN, tool), ['-n', this.name, ...args], { env: this.#env });
      let out = '';
      p.stdout.on('data', (b) => (out += b.toString()));
      p.stderr.on('data', (b) => (out += b.toString()));
      const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
      p.on('close', (code) => {
        clearTimeout(timer);
        if (code === 0) resolve(out);
        else
          reject(
            new Error(`${tool} ${args.join(' ')} on ${this.name} exited ${code}: ${out.trim()}`),
          );
      });
    });
  }

  /** Stops the node cleanly (its data stays, `start()` brings it back). */
  async stopNode() {
    await this.ctl(['stop', join(this.dir, 'pid')]).catch(() => this.kill());
  }

  /** Kills the node's Erlang VM at once (kill -9). */
  kill() {
    const pid = spawnSync('cat', [join(this.dir, 'pid')], { encoding: 'utf8' }).stdout.trim();
    if (pid) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  /** Stops the node and its epmd, and removes its directory. */
  async stop() {
    await this.stopNode();
    spawnSync('epmd', ['-kill'], { env: this.#env });
    rmSync(this.dir, { recursive: true, force: true });
    this.#reaper?.cancel();
    this.#reaper = undefined;
  }
}

/** Starts one node with settings the tests need: long consumer timeout, quorum defaults. */
export async function startRabbit(options = {}) {
  const node = await RabbitNode.create({
    ...options,
    config: ['consumer_timeout = 86400000', ...(options.config ?? [])],
  });
  await node.start();
  return node;
}

/**
 * Starts a cluster of `size` nodes on loopback (shared cookie and epmd port): the first node
 * starts alone, each other one joins it. Returns the nodes, first one first.
 * @param {number} size
 * @param {import('./rabbitmq.d.mts').RabbitNodeOptions} [options]
 * @returns {Promise<RabbitNode[]>}
 */
export async function startCluster(size, options = {}) {
  const cookie = `QTUNE${Math.random().toString(36).slice(2).toUpperCase()}`;
  const epmdPort = await freePort();
  const nodes = [];
  for (let i = 0; i < size; i++) {
    nodes.push(
      await RabbitNode.create({
        ...options,
        cookie,
        epmdPort,
        config: ['consumer_timeout = 86400000', ...(options.config ?? [])],
      }),
    );
  }
  const [first, ...others] = nodes;
  await first.start();
  for (const node of others) {
    await node.start();
    await node.ctl(['stop_app']);
    await node.ctl(['join_cluster', first.name]);
    await node.ctl(['start_app']);
  }
  return nodes;
}
