import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Broker, Consumer } from '../broker/contract.js';
import { ackEach } from '../broker/contract.js';
import { replyAddressOf } from '../broker/reply-channel.js';
import { redact } from '../protocol/redact.js';
import { decode, encode } from '../protocol/codec.js';
import { createEnvelope, MessageType } from '../protocol/envelope.js';
import { printable } from '../protocol/names.js';
import type { EndpointReport, WorkerReport } from '../protocol/worker-report.js';
import type { EndpointState } from './handlers/http-pool.js';

/** Topic on which `qtune status` asks every live worker to report. */
export const CONTROL_STATUS_TOPIC = 'qtune.control.status';

export type { EndpointReport, WorkerReport } from '../protocol/worker-report.js';

/** An endpoint's state as reported, `retryAt` turned into a delay so clocks need not agree. */
export function endpointReport(e: EndpointState, now = Date.now()): EndpointReport {
  const { retryAt, url, ...rest } = e;
  return {
    ...rest,
    url: redact(url),
    ...(retryAt !== undefined && { retryInMs: Math.max(0, retryAt - now) }),
  };
}

/** Table rows (header first) of every reported endpoint, or none when no worker has any. */
export function endpointRows(reports: readonly WorkerReport[]): (string | number)[][] {
  const rows: (string | number)[][] = [];
  for (const r of reports) {
    for (const e of r.endpoints ?? []) {
      const state =
        e.state === 'open' && e.retryInMs !== undefined
          ? `open ${(e.retryInMs / 1000).toFixed(1)}s`
          : e.state;
      rows.push([
        printable(e.url),
        state,
        e.succeeded,
        e.failed,
        `${e.recentFailures}/${e.recentRequests}`,
        e.outstanding,
        `${printable(r.worker.host)}:${r.worker.pid}`,
      ]);
    }
  }
  if (rows.length === 0) return [];
  return [['endpoint', 'state', 'ok', 'failed', 'recent fails', 'in flight', 'worker'], ...rows];
}

/** A broker without topics that takes worker reports and answers status requests for them. */
export interface WorkerReportSink {
  /** Stores `report` for a while (the HTTP gateway: 15 s); called again before that ends. */
  pushWorkerReport(report: WorkerReport): Promise<void>;
}

/** How often a worker on a {@link WorkerReportSink} pushes its report, in ms. */
export const REPORT_PUSH_MS = 5_000;

/**
 * Answers status requests broadcast on {@link CONTROL_STATUS_TOPIC} with `report()` (one
 * report, or several for whoever answers for others), the scatter-gather half of `qtune status`
 * (like Celery's `inspect`). On a broker without topics that is a {@link WorkerReportSink} (the
 * HTTP gateway client), it pushes the report every few seconds instead, and the gateway answers
 * for it; on any other broker without topics it answers nothing. Either way cancel() stops it.
 */
export async function serveStatusRequests(
  broker: Broker,
  report: () => WorkerReport | WorkerReport[],
): Promise<Consumer> {
  if (!broker.capabilities.topics) {
    const sink = broker as Partial<WorkerReportSink>;
    if (typeof sink.pushWorkerReport !== 'function') {
      return { tag: 'status-unavailable', cancel: async () => {}, ackAll: ackEach };
    }
    const push = (): void => {
      for (const r of [report()].flat()) sink.pushWorkerReport!(r).catch(() => undefined);
    };
    push();
    const timer = setInterval(push, REPORT_PUSH_MS);
    timer.unref();
    return {
      tag: 'status-push',
      cancel: async () => clearInterval(timer),
      ackAll: ackEach,
    };
  }
  return broker.subscribe(
    CONTROL_STATUS_TOPIC,
    async (d) => {
      try {
        const req = decode(d.body, { source: `topic "${CONTROL_STATUS_TOPIC}"` });
        const replyTo = replyAddressOf(d, req.replyTo);
        if (replyTo) {
          const replies = [report()].flat().map((payload) => {
            const reply = createEnvelope({
              type: MessageType.Reply,
              correlationId: req.id,
              payload,
            });
            return { id: reply.id, body: encode(reply) };
          });
          if (replies.length > 0) await broker.publish(replyTo, replies);
        }
      } finally {
        await d.ack();
      }
    },
    { prefetch: 4 },
  );
}

/**
 * Broadcasts a status request and collects the reports that arrive within `waitMs`. On a broker
 * without topics (`capabilities.topics === false`) nobody can be asked: no reports.
 */
export async function gatherWorkerReports(broker: Broker, waitMs: number): Promise<WorkerReport[]> {
  if (!broker.capabilities.topics) return [];
  const replyQueue = `qtune.status.${randomUUID()}`;
  await broker.declareQueue(replyQueue, { temporary: true, durable: false });
  const reports: WorkerReport[] = [];
  const request = createEnvelope({
    type: MessageType.Control,
    payload: { op: 'status' },
    replyTo: replyQueue,
  });
  const consumer = await broker.consume(
    replyQueue,
    async (d) => {
      try {
        const env = decode(d.body, { source: `queue "${replyQueue}"` });
        if (env.correlationId === request.id) reports.push(env.payload as WorkerReport);
      } catch {
        // A stray message on our private reply queue: ignore it.
      }
      await d.ack();
    },
    { prefetch: 100 },
  );
  try {
    await broker.publishTopic(CONTROL_STATUS_TOPIC, [{ id: request.id, body: encode(request) }]);
    await sleep(waitMs);
  } finally {
    await consumer.cancel();
    await broker.deleteQueue(replyQueue);
  }
  return reports;
}
