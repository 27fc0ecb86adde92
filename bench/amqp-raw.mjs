#!/usr/bin/env node
// The RabbitMQ ceiling: what raw amqplib gets out of one quorum queue on this machine, with
// nothing of qtune in the way.
//
//   node bench/amqp-raw.mjs [--url amqp://...] [--tasks 20000] [--window 1000]
//                           [--prefetch 500] [--json]
//
// Publishes N persistent messages of envelope size to a fresh quorum queue with publisher
// confirms, at most --window unconfirmed at a time (publishes/s: first publish to last
// confirm), then consumes them with one consumer at --prefetch, acking each
// (consumes/s: consume call to last ack). A qtune task is two publishes (task, result) and two
// consumes, so the task ceiling is 1 / (2 × (1/publish + 1/consume)). Without --url (or
// AMQP_URL) it starts a throwaway RabbitMQ node with test/support/rabbitmq.mjs.
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import amqplib from 'amqplib';
import { usageOf } from './lib.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);
const now = () => performance.timeOrigin + performance.now();

function parseArgs(argv) {
  const opts = {
    url: process.env.AMQP_URL,
    tasks: 20_000,
    window: 1_000,
    prefetch: 500,
    json: false,
  };
  const numeric = { '--tasks': 'tasks', '--window': 'window', '--prefetch': 'prefetch' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg in numeric) {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value <= 0)
        throw new Error(`${arg} needs a positive integer, got '${argv[i] ?? ''}'`);
      opts[numeric[arg]] = value;
    } else if (arg === '--url') {
      opts.url = argv[++i];
      if (!opts.url) throw new Error('--url needs an AMQP URL');
    } else if (arg === '--json') opts.json = true;
    else if (arg === '--help' || arg === '-h') {
      console.log(usageOf(import.meta.url));
      process.exit(0);
    } else throw new Error(`unknown argument '${arg}' (try --help)`);
  }
  return opts;
}

/** A body the size of a qtune task envelope. */
function body(queue, i) {
  return Buffer.from(
    JSON.stringify({
      qtune: 1,
      id: randomUUID(),
      type: 'task',
      payload: { i },
      replyTo: `${queue}.results`,
      createdAt: Date.now(),
    }),
  );
}

async function publishAll(conn, queue, opts) {
  const ch = await conn.createConfirmChannel();
  let outstanding = 0;
  let failed;
  let wake;
  const settle = (err) => {
    outstanding--;
    if (err && failed === undefined) failed = err;
    if (wake) {
      const w = wake;
      wake = undefined;
      w();
    }
  };
  const t0 = now();
  for (let i = 0; i < opts.tasks; i++) {
    while (outstanding >= opts.window) await new Promise((r) => (wake = r));
    if (failed) throw new Error(`publish nacked: ${failed.message ?? failed}`);
    outstanding++;
    const ok = ch.publish(
      '',
      queue,
      body(queue, i),
      { persistent: true, contentType: 'application/json', messageId: String(i) },
      settle,
    );
    if (!ok) await new Promise((r) => ch.once('drain', r));
  }
  await ch.waitForConfirms();
  if (failed) throw new Error(`publish nacked: ${failed.message ?? failed}`);
  const seconds = (now() - t0) / 1000;
  await ch.close();
  return { seconds, perSec: opts.tasks / seconds };
}

async function consumeAll(conn, queue, opts) {
  const ch = await conn.createChannel();
  await ch.prefetch(opts.prefetch);
  let got = 0;
  let done;
  const finished = new Promise((r) => (done = r));
  const t0 = now();
  let last = t0;
  await ch.consume(queue, (msg) => {
    if (msg === null) return;
    ch.ack(msg);
    got++;
    if (got === opts.tasks) {
      last = now();
      done();
    }
  });
  await finished;
  const seconds = (last - t0) / 1000;
  await ch.close();
  return { seconds, perSec: opts.tasks / seconds };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  let node;
  if (!opts.url) {
    const { startRabbit } = await import(path.join(ROOT, 'test', 'support', 'rabbitmq.mjs'));
    node = await startRabbit();
    opts.url = node.url;
    const stop = () => {
      node?.kill();
      process.exit(130);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  }
  const conn = await amqplib.connect(opts.url);
  try {
    const setup = await conn.createChannel();
    const queue = `bench.raw.${randomUUID().slice(0, 8)}`;
    await setup.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    const publish = await publishAll(conn, queue, opts);
    const consume = await consumeAll(conn, queue, opts);
    await setup.deleteQueue(queue);
    await setup.close();
    const ceiling = 1 / (2 * (1 / publish.perSec + 1 / consume.perSec));
    const serverVersion = conn.connection?.serverProperties?.version;
    const out = {
      system: 'amqp-raw',
      version: typeof serverVersion === 'string' ? serverVersion : undefined,
      messages: opts.tasks,
      window: opts.window,
      prefetch: opts.prefetch,
      publishPerSec: Math.round(publish.perSec),
      consumePerSec: Math.round(consume.perSec),
      tasksPerSec: Math.round(ceiling),
      publishSeconds: Math.round(publish.seconds * 1000) / 1000,
      consumeSeconds: Math.round(consume.seconds * 1000) / 1000,
    };
    if (opts.json) process.stdout.write(`${JSON.stringify(out)}\n`);
    else
      process.stdout.write(
        `raw amqplib on a quorum queue (RabbitMQ ${out.version ?? '?'}), ${opts.tasks} messages\n` +
          `  confirmed publishes  ${out.publishPerSec} /s (window ${opts.window})\n` +
          `  consumed + acked     ${out.consumePerSec} /s (prefetch ${opts.prefetch})\n` +
          `  task ceiling         ${out.tasksPerSec} tasks/s = 1 / (2 × (1/publish + 1/consume))\n`,
      );
  } finally {
    await conn.close().catch(() => {});
    if (node) await node.stop();
  }
}

main().catch((error) => {
  console.error(`amqp-raw: ${error.message}`);
  process.exit(1);
});
