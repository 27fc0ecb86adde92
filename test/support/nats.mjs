// @ts-check
/**
 * Starts throwaway NATS servers with JetStream from Debian's nats-server package for tests and
 * benchmarks: each on loopback with a free port and its own JetStream store directory, stopped
 * and removed by `stop()`. `restart()` stops the process and starts it again on the same port
 * and store (for fault tests); `kill()` is kill -9.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './rabbitmq.mjs';
import { reapOnExit } from './reaper.mjs';

const BIN = '/usr/sbin/nats-server';

/** True when the nats-server package is installed. */
export function natsAvailable() {
  return existsSync(BIN);
}

/** Resolves once something accepts TCP connections on `port`, or rejects after `timeoutMs`. */
async function waitListening(port, timeoutMs) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nats-server did not listen on port ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export class NatsServer {
  /** @type {import('node:child_process').ChildProcess | undefined} */
  #proc;
  /** @type {{ cancel(): void } | undefined} */
  #reaper;
  #log = '';
  #args;

  /**
   * Use {@link startNats}.
   * @param {number} port
   * @param {string} dir
   * @param {{ user?: string, password?: string, args?: string[] }} options
   */
  constructor(port, dir, options) {
    /** Client port on 127.0.0.1. */
    this.port = port;
    /** The server's directory (its JetStream store is `dir/js`). */
    this.dir = dir;
    this.user = options.user;
    this.password = options.password;
    this.#args = options.args ?? [];
  }

  /** A nats:// URL for this server, with the credentials when it has some. */
  get url() {
    const auth =
      this.user !== undefined
        ? `${encodeURIComponent(this.user)}:${encodeURIComponent(this.password ?? '')}@`
        : '';
    return `nats://${auth}127.0.0.1:${this.port}`;
  }

  /** Output of the server's current run (for test failures). */
  get log() {
    return this.#log;
  }

  /** Starts the server and waits until it accepts connections. */
  async start(timeoutMs = 30_000) {
    const args = ['-js', '-sd', join(this.dir, 'js'), '-a', '127.0.0.1', '-p', String(this.port)];
    if (this.user !== undefined) args.push('--user', this.user, '--pass', this.password ?? '');
    this.#log = '';
    const proc = spawn(BIN, [...args, ...this.#args], {
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    });
    proc.stderr?.setEncoding('utf8').on('data', (chunk) => {
      if (this.#log.length < 100_000) this.#log += chunk;
    });
    proc.unref();
    /** @type {import('node:stream').Readable} */ (proc.stderr).unref?.();
    this.#proc = proc;
    this.#reaper?.cancel();
    this.#reaper = reapOnExit('kill -9 "$QTUNE_REAP_PID" 2>/dev/null; rm -rf "$QTUNE_REAP_DIR"', {
      ...process.env,
      QTUNE_REAP_PID: String(proc.pid),
      QTUNE_REAP_DIR: this.dir,
    });
    const exited = new Promise((_, reject) =>
      proc.once('exit', (code) =>
        reject(new Error(`nats-server exited with ${code}: ${this.#log.trim()}`)),
      ),
    );
    exited.catch(() => undefined);
    await Promise.race([waitListening(this.port, timeoutMs), exited]);
  }

  /** Stops the server process (SIGTERM, then SIGKILL); its store stays for `start()`. */
  async stopServer() {
    const proc = this.#proc;
    this.#proc = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await gone;
    clearTimeout(timer);
  }

  /** Kills the server at once (kill -9); its store stays for `start()`. */
  async kill() {
    const proc = this.#proc;
    this.#proc = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await gone;
  }

  /** Stops the server and starts it again on the same port and store. */
  async restart() {
    await this.stopServer();
    await this.start();
  }

  /** Stops the server and removes its directory. */
  async stop() {
    await this.stopServer();
    rmSync(this.dir, { recursive: true, force: true });
    this.#reaper?.cancel();
    this.#reaper = undefined;
  }
}

/**
 * Starts a nats-server with JetStream on a free loopback port in a fresh temp dir.
 * @param {{ user?: string, password?: string, args?: string[], dir?: string }} [options]
 * @returns {Promise<NatsServer>}
 */
export async function startNats(options = {}) {
  const port = await freePort();
  const dir = mkdtempSync(join(options.dir ?? tmpdir(), 'nats-'));
  const server = new NatsServer(port, dir, options);
  await server.start();
  return server;
}
