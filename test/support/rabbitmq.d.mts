/** Types of rabbitmq.mjs. */
export function rabbitAvailable(): boolean;
export function freePort(): Promise<number>;

export interface RabbitNodeOptions {
  /** Extra lines for rabbitmq.conf. */
  config?: string[];
  /**
   * The rabbit application's settings that rabbitmq.conf has no key for, written to
   * advanced.config: key to Erlang term, e.g. `{ quorum_commands_soft_limit: '512' }`.
   */
  advanced?: Record<string, string>;
  /** Plugins to enable (default: none). */
  plugins?: string[];
  /** Shared with the other nodes of a cluster (default: a fresh one). */
  cookie?: string;
  epmdPort?: number;
  /** Parent directory (default: a fresh temp dir). */
  dir?: string;
  /** Short node name (default: a unique one). */
  name?: string;
}

export class RabbitNode {
  readonly name: string;
  readonly port: number;
  readonly distPort: number;
  readonly dir: string;
  /** An AMQP URL for this node (guest/guest on the default vhost). */
  readonly url: string;
  static create(options?: RabbitNodeOptions): Promise<RabbitNode>;
  start(timeoutMs?: number): Promise<void>;
  ctl(args: string[], timeoutMs?: number, tool?: string): Promise<string>;
  stopNode(): Promise<void>;
  kill(): void;
  stop(): Promise<void>;
}

export function startRabbit(options?: RabbitNodeOptions): Promise<RabbitNode>;

/** Starts a cluster of `size` nodes on loopback; the first node first. */
export function startCluster(size: number, options?: RabbitNodeOptions): Promise<RabbitNode[]>;
