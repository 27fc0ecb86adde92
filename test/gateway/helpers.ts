import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Broker } from '../../src/broker/contract.js';
import { EmbeddedBroker } from '../../src/broker/embedded/index.js';
import { parseTokenList, type TokenEntry } from '../../src/gateway/auth.js';
import { createGateway, type GatewayOptions } from '../../src/gateway/gateway.js';
import { startCli } from '../cli/helpers.js';
import { waitFor } from '../support/wait.js';

/** Test tokens by role; each at least 16 characters. */
export const TOKENS = {
  producer: 'producer-secret-0123456789abcdef',
  worker: 'worker-secret-0123456789abcdef',
  admin: 'admin-secret-0123456789abcdef',
} as const;

/** `QTUNE_TOKENS` for {@link TOKENS}. */
export const TOKENS_ENV = `alice:producer:${TOKENS.producer},wendy:worker:${TOKENS.worker},root:admin:${TOKENS.admin}`;

export function tokenEntries(): TokenEntry[] {
  return parseTokenList(TOKENS_ENV);
}

export interface TestGateway {
  app: FastifyInstance;
  url: string;
  broker: Broker;
  dir: string;
  path: string;
  close(): Promise<void>;
}

/**
 * Starts a gateway on 127.0.0.1 (a free port) over an embedded broker in a fresh temp dir.
 * `wrap` may put something between the gateway and the broker (a fault injector).
 */
export async function startGateway(
  overrides: Partial<Omit<GatewayOptions, 'broker'>> = {},
  wrap: (broker: Broker) => Broker = (b) => b,
): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'qtune-gateway-'));
  const path = join(dir, 'broker.db');
  const embedded = await EmbeddedBroker.open({ path });
  const broker = wrap(embedded);
  const app = createGateway({ broker, auth: { tokens: tokenEntries() }, ...overrides });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('no TCP address');
  let closed = false;
  return {
    app,
    url: `http://127.0.0.1:${address.port}`,
    broker: embedded,
    dir,
    path,
    async close() {
      if (closed) return;
      closed = true;
      await app.close();
      await embedded.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface CallResult {
  status: number;
  headers: Headers;
  text: string;
  json: unknown;
}

/** One HTTP call with an optional bearer token and JSON (or raw) body. */
export async function call(
  url: string,
  method: string,
  path: string,
  options: {
    token?: string;
    json?: unknown;
    body?: string | Buffer;
    contentType?: string;
    headers?: Record<string, string>;
  } = {},
): Promise<CallResult> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.token !== undefined) headers.authorization = `Bearer ${options.token}`;
  let body: string | Buffer | undefined;
  if (options.json !== undefined) {
    body = JSON.stringify(options.json);
    headers['content-type'] = options.contentType ?? 'application/json';
  } else if (options.body !== undefined) {
    body = options.body;
    headers['content-type'] = options.contentType ?? 'application/json';
  }
  const res = await fetch(url + path, { method, headers, ...(body !== undefined && { body }) });
  const text = await res.text();
  let json: unknown;
  try {
    json = text === '' ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** The error code of an error answer. */
export function errorCodeOf(res: CallResult): string | undefined {
  return (res.json as { error?: { code?: string } } | undefined)?.error?.code;
}

/** The error message of an error answer. */
export function errorMessageOf(res: CallResult): string {
  return (res.json as { error?: { message?: string } } | undefined)?.error?.message ?? '';
}

/**
 * Starts `qtune serve --port 0` with `args` and `tokens` as QTUNE_TOKENS (default: the test
 * tokens); resolves its URL
 * once it listens, and the process (the caller stops it).
 */
export async function startServe(
  args: readonly string[],
  tokens: string = TOKENS_ENV,
): Promise<{ url: string; child: ReturnType<typeof startCli> }> {
  const child = startCli(['serve', '--port', '0', ...args], { QTUNE_TOKENS: tokens });
  try {
    const url = await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`qtune serve exited: ${child.stderrText()}`);
        return /gateway listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(child.stderrText())?.[1];
      },
      20_000,
      'qtune serve to listen',
    );
    return { url, child };
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}
