#!/usr/bin/env node
// The NATS JetStream ceiling: what the official @nats-io/jetstream client gets out of one
// work-queue stream on this machine, with nothing of qtune in the way.
//
//   node bench/nats-raw.mjs [--url nats://...] [--tasks 20000] [--window 1000]
//                           [--prefetch 500] [--json]
//
// Publishes N messages of envelope size to a fresh file-storage work-queue stream, each
// acknowledged by JetStream (js.publish), at most --window unacknowledged at a time
// (publishes/s: first publish to last ack), then consumes them with one durable explicit-ack
// pull consumer (consumer.consume with --prefetch messages buffered), acking each
// (consumes/s: consume call to last ack). A qtune task is two publishes (task, result) and two
// consumes, so the task ceiling is 1 / (2 × (1/publish + 1/consume)). Without --url (or
// NATS_URL) it starts a throwaway nats-server with test/support/nats.mjs.
import { randomUUID } from 'node:crypto';
import process from 'node:process';
import { connect } from '@nats-io/transport-node';
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { benchOptions } from './lib.mjs';

const now = () => performance.timeOrigin + performance.now();

const args = benchOptions(import.meta.url, {
  url: { type: 'string' },
  tasks: { type: 'string', default: '20000' },
  window: { type: 'string', default: '1000' },
  prefetch: { type: 'string', default: '500' },
  json: { type: 'boolean', default: false },
});
const positive = (name) => {
  const v = Number(args[name]);
  if (!Number.isInteger(v) || v <= 0) {
    console.error(`--${name} needs a positive integer, got '${args[name]}' (try --help)`);
    process.exit(2);
  }
  return v;
};
const opts = {
  url: args.url ?? process.env.NATS_URL,
  tasks: positive('tasks'),
  window: positive('window'),
  prefetch: positive('prefetch'),
  json: args.json,
};

/** A body the size of a qtune task envelope. */
function body(queue, i) {
  return JSON.stringify({
    qtune: 1,
    id: randomUUID(),
    type: 'task',
    payload: { i },
    replyTo: `${queue}.results`,
    createdAt: Date.now(),
  });
}

async function publishAll(js, subject, queue) {
  let next = 0;
  const t0 = now();
  const worker = async () => {
    while (next < opts.tasks) {
      const i = next++;
      await js.publish(subject, body(queue, i), { msgID: `${queue}-${i}` });
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.window, opts.tasks) }, worker));
  const seconds = (now() - t0) / 1000;
  return { seconds, perSec: opts.tasks / seconds };
}

async function consumeAll(js, stream) {
  const consumer = await js.consumers.get(stream, 'raw');
  const t0 = now();
  const messages = await consumer.consume({ max_messages: opts.prefetch });
  let got = 0;
  for await (const m of messages) {
    m.ack();
    if (++got === opts.tasks) break;
  }
  const last = now();
  await messages.close();
  return { seconds: (last - t0) / 1000, perSec: opts.tasks / ((last - t0) / 1000) };
}

async function main() {
  let server;
  let url = opts.url;
  if (url === undefined) {
    const { startNats } = await import('../test/support/nats.mjs');
    server = await startNats();
    url = server.url;
  }
  const nc = await connect({ servers: new URL(url).host });
  try {
    const jsm = await jetstreamManager(nc);
    const queue = `raw${randomUUID().slice(0, 8)}`;
    const stream = `RAW_${queue}`;
    const subject = `raw.${queue}`;
    await jsm.streams.add({
      name: stream,
      subjects: [subject],
      retention: 'workqueue',
      storage: 'file',
    });
    await jsm.consumers.add(stream, {
      durable_name: 'raw',
      ack_policy: AckPolicy.Explicit,
      max_ack_pending: -1,
    });
    const js = jetstream(nc);
    const pub = await publishAll(js, subject, queue);
    const con = await consumeAll(js, stream);
    await jsm.streams.delete(stream);
    const ceiling = 1 / (2 * (1 / pub.perSec + 1 / con.perSec));
    const info = nc.info;
    const out = {
      system: 'nats-raw',
      server: info?.version,
      tasks: opts.tasks,
      publishPerSec: pub.perSec,
      consumePerSec: con.perSec,
      tasksPerSec: ceiling,
    };
    if (opts.json) process.stdout.write(`${JSON.stringify(out)}\n`);
    else {
      process.stdout.write(
        `nats-server ${out.server}: publish ${pub.perSec.toFixed(0)}/s, consume ${con.perSec.toFixed(0)}/s, ` +
          `task ceiling ${ceiling.toFixed(0)}/s\n`,
      );
    }
  } finally {
    await nc.close();
    await server?.stop();
  }
}

main().catch((err) => {
  console.error(`nats-raw: ${err.stack ?? err}`);
  process.exit(1);
});
