import { afterSlashes, splitTargetUrl, targetPath, unknownScheme } from '../protocol/target-url.js';
import type { Broker } from './contract.js';

/** Default location of the embedded broker's database, in the project folder (see projectHome). */
export const DEFAULT_EMBEDDED_PATH = '.qtune/broker.db';

export interface BrokerTarget {
  kind: 'memory' | 'embedded' | 'amqp' | 'gateway' | 'nats';
  /** Embedded: absolute path of the SQLite file. Memory: the bus name. AMQP, gateway, NATS: the URL. */
  location: string;
}

/**
 * Parses a broker URL. Accepted forms: unset or empty (embedded at `broker.db` in the project's
 * `.qtune/` folder, found from `cwd` upward or given by `QTUNE_HOME`),
 * `embedded:PATH` / `sqlite:PATH` / a plain file path (embedded), `memory:` or `memory://NAME`,
 * `amqp://user:pass@host:port/vhost` or `amqps://...` (RabbitMQ), `http://host:port` or
 * `https://...` (a `qtune serve` HTTP gateway), `nats://user:pass@host:port` (NATS JetStream).
 */
export function parseBrokerUrl(url: string | undefined, cwd = process.cwd()): BrokerTarget {
  const target = splitTargetUrl(url);
  switch (target.scheme) {
    case undefined:
    case 'embedded':
    case 'sqlite':
    case 'file':
      return { kind: 'embedded', location: targetPath(target, cwd, 'broker.db') };
    case 'memory': {
      const name = afterSlashes(target);
      return { kind: 'memory', location: name === '' ? 'default' : name };
    }
    case 'amqp':
    case 'amqps':
      return { kind: 'amqp', location: target.raw };
    case 'http':
    case 'https':
      return { kind: 'gateway', location: target.raw };
    case 'nats':
      return { kind: 'nats', location: target.raw };
    default:
      throw unknownScheme(
        'broker URL',
        target,
        'embedded:PATH, memory://NAME, amqp://HOST, amqps://HOST, http(s)://GATEWAY, nats://HOST',
      );
  }
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
  if (target.kind === 'nats') {
    const { NatsBroker } = await import('./nats/index.js');
    return NatsBroker.open(target.location);
  }
  const { EmbeddedBroker } = await import('./embedded/index.js');
  return EmbeddedBroker.open({
    path: target.location,
    ...(options.create !== undefined && { create: options.create }),
  });
}
