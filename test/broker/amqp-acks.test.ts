import type { Channel, ConsumeMessage } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { AckBatcher } from '../../src/broker/amqp/acks.js';

// Pure logic: which ack frames the batcher sends for a pattern of settles. A recording channel
// stands in for amqplib's; RabbitMQ's side is covered in amqp.test.ts.
function recorder() {
  const sent: string[] = [];
  const channel = {
    ack: (m: ConsumeMessage, multiple = false) =>
      sent.push(`ack ${m.fields.deliveryTag}${multiple ? ' multiple' : ''}`),
    nack: (m: ConsumeMessage, _all: boolean, requeue: boolean) =>
      sent.push(`nack ${m.fields.deliveryTag}${requeue ? ' requeue' : ''}`),
  } as unknown as Channel;
  return { sent, channel };
}

const msg = (tag: number) => ({ fields: { deliveryTag: tag } }) as ConsumeMessage;
const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('AckBatcher', () => {
  it('sends the acks of one turn as one multiple ack, after the turn', async () => {
    const { sent, channel } = recorder();
    const acks = new AckBatcher(channel);
    const ms = [1, 2, 3, 4].map(msg);
    ms.forEach((m) => acks.track(m));
    ms.forEach((m) => acks.ack(m));
    expect(sent).toEqual([]);
    await turn();
    expect(sent).toEqual(['ack 4 multiple']);
  });

  it('never covers a delivery still held: acks past it go one by one', async () => {
    const { sent, channel } = recorder();
    const acks = new AckBatcher(channel);
    const ms = [1, 2, 3, 4, 5].map(msg);
    ms.forEach((m) => acks.track(m));
    acks.ack(ms[0]!);
    acks.ack(ms[1]!);
    acks.ack(ms[3]!);
    await turn();
    expect(sent).toEqual(['ack 2 multiple', 'ack 4']);
    // 3 is acked later; 5 after it: one multiple ack up to 5 (4 is already settled).
    acks.ack(ms[2]!);
    acks.ack(ms[4]!);
    await turn();
    expect(sent).toEqual(['ack 2 multiple', 'ack 4', 'ack 5 multiple']);
  });

  it('rejects at once, and a rejected delivery no longer blocks the multiple ack', async () => {
    const { sent, channel } = recorder();
    const acks = new AckBatcher(channel);
    const ms = [1, 2, 3].map(msg);
    ms.forEach((m) => acks.track(m));
    acks.nack(ms[0]!, true);
    expect(sent).toEqual(['nack 1 requeue']);
    acks.ack(ms[1]!);
    acks.ack(ms[2]!);
    acks.ack(ms[2]!); // a second settle of the same delivery sends nothing more
    acks.nack(ms[1]!, true); // nor does a reject after its ack
    await turn();
    expect(sent).toEqual(['nack 1 requeue', 'ack 3 multiple']);
  });

  it('flush sends at once; after close nothing is sent', async () => {
    const { sent, channel } = recorder();
    const acks = new AckBatcher(channel);
    acks.track(msg(1));
    acks.track(msg(2));
    acks.ack(msg(1));
    acks.flush();
    expect(sent).toEqual(['ack 1 multiple']);
    acks.ack(msg(2));
    acks.close();
    await turn();
    acks.nack(msg(2), true);
    expect(sent).toEqual(['ack 1 multiple']);
  });

  it('ignores deliveries it never tracked (another channel)', async () => {
    const { sent, channel } = recorder();
    const acks = new AckBatcher(channel);
    acks.ack(msg(7));
    acks.nack(msg(8), true);
    await turn();
    expect(sent).toEqual([]);
  });
});
