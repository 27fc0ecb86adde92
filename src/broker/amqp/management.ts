/** Queue figures read from RabbitMQ's management HTTP API. */
export interface ManagedQueue {
  name: string;
  messages: number;
  ready: number;
  unacknowledged: number;
}

interface RawQueue {
  name?: unknown;
  messages?: unknown;
  messages_ready?: unknown;
  messages_unacknowledged?: unknown;
}

/**
 * A minimal client of the `rabbitmq_management` HTTP API, used for what AMQP 0-9-1 cannot tell:
 * the list of queues and the unacknowledged (in-flight) count of a queue across all clients.
 */
export class Management {
  readonly #base: string;
  readonly #auth: string;
  readonly #vhost: string;

  constructor(base: string, user: string, password: string, vhost: string) {
    this.#base = base.replace(/\/+$/, '');
    this.#auth = `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
    this.#vhost = encodeURIComponent(vhost);
  }

  /** True when the API answers with these credentials within `timeoutMs`. */
  async probe(timeoutMs = 1500): Promise<boolean> {
    try {
      await this.#get('/api/overview', timeoutMs);
      return true;
    } catch {
      return false;
    }
  }

  /** Queues of the vhost, optionally only those whose name matches the regular expression. */
  async queues(nameRegex?: string): Promise<ManagedQueue[]> {
    const query = new URLSearchParams({
      columns: 'name,messages,messages_ready,messages_unacknowledged',
    });
    if (nameRegex !== undefined) {
      query.set('page', '1');
      query.set('page_size', '500');
      query.set('name', nameRegex);
      query.set('use_regex', 'true');
    }
    const body = (await this.#get(`/api/queues/${this.#vhost}?${query.toString()}`)) as
      RawQueue[] | { items?: RawQueue[] };
    const items = Array.isArray(body) ? body : (body.items ?? []);
    return items.map(toQueue);
  }

  /** One queue, or undefined when it does not exist. */
  async queue(name: string): Promise<ManagedQueue | undefined> {
    try {
      const raw = (await this.#get(
        `/api/queues/${this.#vhost}/${encodeURIComponent(name)}?columns=name,messages,messages_ready,messages_unacknowledged`,
      )) as RawQueue;
      return toQueue(raw);
    } catch (err) {
      if (err instanceof HttpError && err.status === 404) return undefined;
      throw err;
    }
  }

  async #get(path: string, timeoutMs = 5000): Promise<unknown> {
    const res = await fetch(`${this.#base}${path}`, {
      headers: { authorization: this.#auth },
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!res.ok) throw new HttpError(res.status, `GET ${path}: HTTP ${res.status}`);
    return res.json();
  }
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

function toQueue(raw: RawQueue): ManagedQueue {
  return {
    name: String(raw.name ?? ''),
    messages: num(raw.messages),
    ready: num(raw.messages_ready),
    unacknowledged: num(raw.messages_unacknowledged),
  };
}
