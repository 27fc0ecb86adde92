/** Types of nats.mjs. */
export function natsAvailable(): boolean;

export interface NatsServerOptions {
  /** Require this user (with `password`) on every connection (default: no auth). */
  user?: string;
  password?: string;
  /** Extra nats-server arguments. */
  args?: string[];
  /** Parent directory (default: a fresh temp dir). */
  dir?: string;
}

export class NatsServer {
  readonly port: number;
  readonly dir: string;
  readonly user: string | undefined;
  readonly password: string | undefined;
  /** A nats:// URL for this server, with the credentials when it has some. */
  readonly url: string;
  readonly log: string;
  start(timeoutMs?: number): Promise<void>;
  stopServer(): Promise<void>;
  kill(): Promise<void>;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export function startNats(options?: NatsServerOptions): Promise<NatsServer>;
