#!/usr/bin/env node
// CPU time a `qtune worker` process spends per no-op task on RabbitMQ, builds side by side.
// Wall-clock throughput on a shared 2-core machine swings by a third within minutes; the CPU a
// worker burns per task is steadier, and what the broker and the other processes lose to it.
//
//   node bench/amqp-worker-cpu.mjs [--tasks 20000] [--rounds 3] [--mode live|preloaded]
//                                  [--build DIR ...]
//
// Each --build is a checkout whose `dist/` was built (default: this one); rounds alternate
// between the builds. It starts one throwaway RabbitMQ node (test/support/rabbitmq.mjs), then
// per round and build declares a fresh task queue, starts one `qtune worker` process of that
// build (no-op handler, concurrency 50, prefetch 500), and reads the worker's CPU time (user +
// system, from /proc) around the run:
//   - live (default): tasks are published in batches of 1,000 while the worker runs, as in
//     `qtune bench`; CPU is counted from the first publish to the last result read.
//   - preloaded: every task is queued before the worker starts; CPU is counted from the first
//     result to the last.
// The producer and result reader run in this process with this checkout's broker client.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { envelopeMessage } from '../dist/broker/envelope-message.js';
import { openBroker } from '../dist/broker/open.js';
import { resultQueueOf } from '../dist/patterns/work-queue.js';
import { createEnvelope, MessageType } from '../dist/protocol/envelope.js';
import { rabbitAvailable, startRabbit } from '../test/support/rabbitmq.mjs';
import { benchOptions, fmt, median, printTable } from './lib.mjs';

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const args = benchOptions(import.meta.url, {
  tasks: { type: 'string', default: '20000' },
  rounds: { type: 'string', default: '3' },
  mode: { type: 'string', default: 'live' },
  build: { type: 'string', multiple: true },
});
const N = Number(args.tasks);
const ROUNDS = Number(args.rounds);
if (!Number.isInteger(N) || N < 1000) throw new Error(`--tasks must be an integer >= 1000`);
if (!['live', 'preloaded'].includes(args.mode))
  throw new Error(`--mode takes live or preloaded, got '${args.mode}'`);
const labels = args.build ?? ['.'];
const builds = (args.build ?? [ROOT]).map((b) => path.resolve(b));
if (!rabbitAvailable()) throw new Error('rabbitmq-server is not installed (see bench/README.md)');

/** CPU ticks (1/100 s) used so far by process `pid`. */
function cpuTicks(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

async function publishAll(broker, queue) {
  const replyTo = resultQueueOf(queue);
  for (let i = 0; i < N; i += 1000) {
    const batch = Array.from({ length: Math.min(1000, N - i) }, () =>
      envelopeMessage(createEnvelope({ type: MessageType.Task, payload: null, replyTo })),
    );
    await broker.publish(queue, batch);
  }
}

/** One worker process of `build` drains N tasks; returns its CPU µs per task and tasks/s. */
async function round(broker, url, build) {
  const queue = `cpu.${Math.random().toString(36).slice(2, 10)}`;
  await broker.declareQueue(queue);
  await broker.declareQueue(resultQueueOf(queue));
  if (args.mode === 'preloaded') await publishAll(broker, queue);
  const worker = spawn(
    process.execPath,
    [
      path.join(build, 'dist/cli/main.js'),
      'worker',
      queue,
      '--broker',
      url,
      '--module',
      path.join(build, 'dist/cli/builtin/noop-handler.js'),
      '--concurrency',
      '50',
      '--prefetch',
      '500',
    ],
    { stdio: 'ignore' },
  );
  let got = 0;
  let t0 = 0;
  let c0 = 0;
  const consumer = await broker.consume(
    resultQueueOf(queue),
    (d) => {
      if (got++ === 0 && args.mode === 'preloaded') {
        t0 = performance.now();
        c0 = cpuTicks(worker.pid);
      }
      return d.ack();
    },
    { prefetch: 2000 },
  );
  try {
    if (args.mode === 'live') {
      // Give the worker time to start and subscribe before the clock starts.
      await new Promise((r) => setTimeout(r, 1500));
      t0 = performance.now();
      c0 = cpuTicks(worker.pid);
      await publishAll(broker, queue);
    }
    const giveUp = Date.now() + 120_000;
    while (got < N) {
      if (Date.now() > giveUp || worker.exitCode !== null)
        throw new Error(`${build}: ${got} of ${N} results`);
      await new Promise((r) => setTimeout(r, 10));
    }
    const seconds = (performance.now() - t0) / 1000;
    const cpuUs = ((cpuTicks(worker.pid) - c0) * 10_000) / N;
    return { cpuUs, tasksPerSec: N / seconds };
  } finally {
    await consumer.cancel();
    worker.kill('SIGTERM');
    if (worker.exitCode === null) await new Promise((r) => worker.once('exit', r));
    for (const q of [queue, resultQueueOf(queue), `${queue}.dlq`, `${resultQueueOf(queue)}.dlq`])
      await broker.deleteQueue(q).catch(() => undefined);
  }
}

const node = await startRabbit();
const results = new Map(builds.map((b) => [b, []]));
try {
  const broker = await openBroker(node.url);
  try {
    for (let r = 0; r < ROUNDS; r++) {
      for (const build of r % 2 === 0 ? builds : [...builds].reverse()) {
        const res = await round(broker, node.url, build);
        results.get(build).push(res);
        console.error(
          `round ${r + 1}, ${build}: ${fmt(res.cpuUs)} µs CPU/task, ${Math.round(res.tasksPerSec)} tasks/s`,
        );
      }
    }
  } finally {
    await broker.close();
  }
} finally {
  await node.stop();
}
printTable(
  `One qtune worker on RabbitMQ, ${N} no-op tasks (${args.mode}), medians of ${ROUNDS} rounds`,
  ['build', 'worker CPU µs/task', 'range', 'tasks/s'],
  builds.map((b, i) => {
    const rs = results.get(b);
    const cpu = rs.map((x) => x.cpuUs);
    return [
      labels[i],
      fmt(median(cpu)),
      `${fmt(Math.min(...cpu))}–${fmt(Math.max(...cpu))}`,
      fmt(median(rs.map((x) => x.tasksPerSec)), 0),
    ];
  }),
);
