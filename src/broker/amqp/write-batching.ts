import type { ChannelModel } from 'amqplib';
import type { Writable } from 'node:stream';

const BATCHED = Symbol('qtune.batchedWrites');

/**
 * Makes the frames one turn of the event loop writes to a connection's socket leave in one
 * `writev`. amqplib writes every frame with its own `socket.write`, each a system call: a burst
 * of publishes or acks costs thousands of them. The socket is corked at the first write of a
 * turn and uncorked on the next tick, so nothing waits for a timer.
 */
export function batchSocketWrites(conn: ChannelModel): void {
  // amqplib keeps the socket at `connection.stream` (not part of its typed API).
  const socket = (conn as unknown as { connection?: { stream?: unknown } }).connection?.stream as
    (Writable & { [BATCHED]?: true }) | undefined;
  if (!socket || typeof socket.cork !== 'function' || socket[BATCHED]) return;
  socket[BATCHED] = true;
  const write = socket.write;
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  socket.write = function (this: Writable, ...args: unknown[]): boolean {
    if (!corked) {
      corked = true;
      socket.cork();
      process.nextTick(uncork);
    }
    return (write as (...a: unknown[]) => boolean).apply(this, args);
  } as Writable['write'];
}
