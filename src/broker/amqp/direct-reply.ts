import { randomUUID } from 'node:crypto';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { BrokerError, ErrorCode } from '../../protocol/errors.js';
import type { OutgoingMessage } from '../contract.js';
import type { ReplyChannel, ReplyMessage } from '../reply-channel.js';
import type { Link } from './link.js';
import { publishOptions, toBuffer } from './properties.js';

/** RabbitMQ's pseudo-queue for direct reply-to. */
export const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';

/** Whether `address` is a reply address RabbitMQ made for a direct reply-to requester. */
export function isDirectReplyAddress(address: unknown): address is string {
  return typeof address === 'string' && address.startsWith(`${DIRECT_REPLY_TO}.`);
}

/**
 * Request/reply over RabbitMQ's direct reply-to: one confirm channel that consumes
 * `amq.rabbitmq.reply-to` (no acks: the replies are not queued anywhere) and publishes the
 * requests, which RabbitMQ tags with a reply address naming this channel. A responder publishes
 * its reply to that address and it comes straight back here, with no reply queue to declare or
 * delete. After a reconnect a new channel takes over; replies on their way to the old one are
 * lost, and the requests waiting for them time out.
 */
export class DirectReplyChannel implements ReplyChannel {
  readonly replyTo = DIRECT_REPLY_TO;
  readonly #link: Link;
  readonly #onReply: (reply: ReplyMessage) => void;
  readonly #onClosed: () => void;
  #channel: ConfirmChannel | undefined;
  /** Message ids RabbitMQ returned as unroutable, until the publish call that sent them ends. */
  readonly #returned = new Set<string>();
  #opening: Promise<ConfirmChannel> | undefined;
  #closed = false;

  private constructor(link: Link, onReply: (reply: ReplyMessage) => void, onClosed: () => void) {
    this.#link = link;
    this.#onReply = onReply;
    this.#onClosed = onClosed;
  }

  /** Opens the channel; `onClosed` is called once when it is closed. */
  static async open(
    link: Link,
    onReply: (reply: ReplyMessage) => void,
    onClosed: () => void = () => undefined,
  ): Promise<DirectReplyChannel> {
    const channel = new DirectReplyChannel(link, onReply, onClosed);
    await channel.#ready();
    return channel;
  }

  /** The live channel, opening one (after a reconnect) when there is none. */
  #ready(): Promise<ConfirmChannel> {
    if (this.#closed) {
      return Promise.reject(
        new BrokerError(ErrorCode.BrokerState, 'the direct reply-to channel is closed'),
      );
    }
    if (this.#channel) return Promise.resolve(this.#channel);
    this.#opening ??= this.#link
      .connection()
      .then((conn) => this.#open(conn))
      .finally(() => (this.#opening = undefined));
    return this.#opening;
  }

  async #open(conn: ChannelModel): Promise<ConfirmChannel> {
    const ch = await conn.createConfirmChannel();
    ch.on('error', () => undefined);
    // One listener for every publish call (a listener per call would warn past ten at once).
    // RabbitMQ returns an unroutable mandatory message before it confirms it.
    ch.on('return', (msg: { properties: { messageId?: unknown } }) =>
      this.#returned.add(String(msg.properties.messageId)),
    );
    ch.on('close', () => {
      if (this.#channel === ch) this.#channel = undefined;
    });
    // Consume before the first publish: RabbitMQ requires it.
    await ch.consume(
      DIRECT_REPLY_TO,
      (msg) => {
        if (msg === null) return;
        this.#onReply({ id: String(msg.properties.messageId ?? ''), body: msg.content });
      },
      { noAck: true },
    );
    if (this.#closed) {
      await ch.close().catch(() => undefined);
      throw new BrokerError(ErrorCode.BrokerState, 'the direct reply-to channel is closed');
    }
    this.#channel = ch;
    return ch;
  }

  async publish(queue: string, messages: readonly OutgoingMessage[]): Promise<void> {
    const ch = await this.#ready();
    const sent: string[] = [];
    try {
      const confirms = messages.map((m) => {
        const id = m.id ?? randomUUID();
        sent.push(id);
        const options = { ...publishOptions(m, id, 1), replyTo: DIRECT_REPLY_TO };
        return new Promise<string>((resolve, reject) => {
          ch.publish('', queue, toBuffer(m.body), options, (err: unknown) =>
            err
              ? reject(
                  new BrokerError(
                    ErrorCode.BrokerUnavailable,
                    `RabbitMQ did not confirm a request for queue "${queue}"`,
                  ),
                )
              : resolve(id),
          );
        });
      });
      const ids = await Promise.all(confirms);
      if (ids.some((id) => this.#returned.has(id))) {
        throw new BrokerError(
          ErrorCode.BrokerState,
          `request for queue "${queue}" is unroutable: the queue does not exist; declare it first`,
        );
      }
    } finally {
      for (const id of sent) this.#returned.delete(id);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#onClosed();
    const ch = this.#channel;
    this.#channel = undefined;
    await ch?.close().catch(() => undefined);
  }
}
