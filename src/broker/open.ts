import { join, resolve } from 'node:path';
import { InputError } from '../protocol/errors.js';
import { projectHome } from '../protocol/project-home.js';
import { redact } from '../protocol/redact.js';
import type { Broker } from './contract.js';

/** Default location of the embedded broker's database, in the project folder (see projectHome). */
export const DEFAULT_EMBEDDED_PATH = '.qtune/broker.db';

export interface BrokerTarget {
  kind: 'memory' | 'embedded' | 'amqp' | 'gateway';
  /** Embedded: absolute path of the SQLite file. Memory: the bus name. AMQP, gateway: the URL. */
  location: string;
}

/**
 * Parses a broker URL. Accepted forms: unset or empty (embedded at `broker.db` in the project's
 * `.qtune/` folder, found from `cwd` upward or given by `QTUNE_HOME`),
 * `embedded:PATH` / `sqlite:PATH` / a plain file path (embedded), `memory:` or `memory://NAME`,
 * `amqp://user:pass@host:port/vhost` or `amqps://...` (RabbitMQ), `http://host:port` or
 * `https://...` (a `qtune serve` HTTP gateway).
 */
export function parseBrokerUrl(url: string | undefined, cwd = process.cwd()): BrokerTarget {
  const raw = (url ?? '').trim();
  if (raw === '') return { kind: 'embedded', location: join(projectHome(cwd), 'broker.db') };
  const scheme = /^([a-z][a-z0-9+.-]*):(.*)$/i.exec(raw);
  if (!scheme || scheme[1]!.length === 1 /* a Windows drive letter */) {
    return { kind: 'embedded', location: resolve(cwd, raw) };
  }
  const name = scheme[1]!.toLowerCase();
  let rest = scheme[2]!;
  if (name === 'memory') {
    rest = rest.replace(/^\/\//, '');
    return { kind: 'memory', location: rest === '' ? 'default' : rest };
  }
  if (name === 'amqp' || name === 'amqps') return { kind: 'amqp', location: raw };
  if (name === 'http' || name === 'https') return { kind: 'gateway', location: raw };
  if (name === 'embedded' || name === 'sqlite' || name === 'file') {
    rest = rest.replace(/^\/\//, '');
    if (rest === '') return { kind: 'embedded', location: join(projectHome(cwd), 'broker.db') };
    return { kind: 'embedded', location: resolve(cwd, rest) };
  }
  throw new InputError(
    `broker URL "${redact(raw)}": unknown scheme "${name}:" (expected embedded:PATH, memory://NAME, amqp://HOST, amqps://HOST, http(s)://GATEWAY)`,
  );
}

/** Options of {@link openBroker}. */
export interface OpenBrokerOptions {
  /** Bearer token for an http(s) gateway URL (default: the QTUNE_TOKEN environment variable). */
  token?: string;
  /**
   * Create an embedded broker's file when missing; with false, a missing file rejects with a
   * NotFoundError and nothing is created (default: true). Other brokers ignore it.
   */
  create?: boolean;
}

/** Opens a broker handle chosen by URL (see {@link parseBrokerUrl}). */
export async function openBroker(url?: string, options: OpenBrokerOptions = {}): Promise<Broker> {
  const target = parseBrokerUrl(url);
  if (target.kind === 'gateway') {
    const { GatewayBroker } = await import('./gateway/index.js');
    const token = options.token ?? process.env.QTUNE_TOKEN;
    return GatewayBroker.open({
      url: target.location,
      ...(token !== undefined && token !== '' && { token }),
    });
  }
  if (target.kind === 'memory') {
    const { MemoryBroker, sharedMemoryBus } = await import('./memory/index.js');
    return new MemoryBroker(sharedMemoryBus(target.location));
  }
  if (target.kind === 'amqp') {
    const { AmqpBroker } = await import('./amqp/index.js');
    return AmqpBroker.open(target.location);
  }
  const { EmbeddedBroker } = await import('./embedded/index.js');
  return EmbeddedBroker.open({
    path: target.location,
    ...(options.create !== undefined && { create: options.create }),
  });
}

/** Hides the passwords in a URL (or any text) so it can be logged; see src/protocol/redact.ts. */
export { redact };
