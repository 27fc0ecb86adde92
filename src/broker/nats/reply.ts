import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { createInbox } from '@nats-io/transport-node';
import type { OutgoingMessage } from '../contract.js';
import type { ReplyChannel, ReplyMessage } from '../reply-channel.js';
import { decodeHeaders } from './message.js';

/**
 * Request/reply over NATS inboxes: requests go to the queue's stream as usual with this
 * channel's inbox as their reply address; a responder's reply to an `_INBOX.` address is a
 * core NATS message straight to the subscription here, with no reply queue. Replies sent while
 * the requester is disconnected are lost (the request times out).
 */
export class NatsReplyChannel implements ReplyChannel {
  readonly replyTo: string;
  readonly #sub: Subscription;
  readonly #publish: (queue: string, messages: readonly OutgoingMessage[]) => Promise<unknown>;
  readonly #onClosed: () => void;
  #closed = false;

  constructor(
    nc: NatsConnection,
    publish: (queue: string, messages: readonly OutgoingMessage[]) => Promise<unknown>,
    onReply: (reply: ReplyMessage) => void,
    onClosed: () => void,
  ) {
    this.replyTo = createInbox();
    this.#publish = publish;
    this.#onClosed = onClosed;
    this.#sub = nc.subscribe(this.replyTo, {
      callback: (_err, msg) => {
        const id = decodeHeaders(msg.headers).id ?? '';
        onReply({
          id,
          body: Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength),
        });
      },
    });
  }

  async publish(queue: string, messages: readonly OutgoingMessage[]): Promise<void> {
    await this.#publish(queue, messages);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (!this.#sub.isClosed()) this.#sub.unsubscribe();
    this.#onClosed();
  }
}
