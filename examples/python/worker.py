#!/usr/bin/env python3
"""A qtune worker on RabbitMQ written with nothing but pika: squares numbers.

    python3 worker.py --url amqp://guest:guest@127.0.0.1:5672/%2F --queue squares \
        [--prefetch 10] [--max-tasks N] [--idle-exit SECONDS] [--max-attempts 3]

Declares, unless they exist, the task queue NAME and the result queue NAME.results (and their
dead-letter queues NAME.dead and NAME.results.dead) exactly as qtune does: durable quorum
queues, with the arguments listed in qtune_amqp.py. Consumes NAME with manual acks and a per-consumer
prefetch. For each task:

- the body is an envelope when it is a JSON object with a "qtune" field, otherwise the whole
  body is the payload and the task id is the AMQP message_id (docs/protocol.md, "Bare
  messages"); attempt = x-qtune-delivered + x-delivery-count + 1 (headers; 0 when absent);
- the work: a payload {"n": 3} (or just 3) gives {"n": 3, "square": 9}; {"fail": "why"} fails;
- on success it publishes a result envelope (correlationId = the task id, payload = taskId, ok,
  value, worker{host, pid, id}, startedAt, finishedAt, durationMs, attempt) to the task's
  replyTo or NAME.results, waits for the publisher confirm, then acks the task;
- a failure is retried (nack with requeue) until --max-attempts; then it publishes a failed
  result (ok false, error {code: HANDLER_FAILED, message}) and dead-letters the task;
- a body that is not JSON, or an envelope of a newer version, is dead-lettered at once.

Dead-lettering publishes the body unchanged with its properties to NAME.dead, adding the headers
x-qtune-dead-reason ("CODE: message"), x-qtune-dead-queue and x-qtune-deliveries, waits for the
confirm and acks the task, so `qtune dlq NAME` lists it.

Stops after --max-tasks tasks, after --idle-exit seconds without a task, or on Ctrl-C.
"""
import argparse
import json
import os
import secrets
import signal
import socket
import sys
import time

import pika

from qtune_amqp import (
    PROTOCOL_VERSION,
    connect,
    ensure_queue,
    envelope,
    now_ms,
    properties,
    publish,
)

HOST = socket.gethostname()
WORKER = {"host": HOST, "pid": os.getpid(), "id": f"{HOST}:{os.getpid()}:{secrets.token_hex(2)}"}


class Unreadable(Exception):
    """A body that cannot be read: dead-lettered at once with `code`."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def compute(payload):
    """The work itself."""
    if isinstance(payload, dict) and payload.get("fail"):
        raise ValueError(str(payload["fail"]))
    n = payload.get("n") if isinstance(payload, dict) else payload
    if isinstance(n, bool) or not isinstance(n, (int, float)):
        raise ValueError(f"expected a number or {{\"n\": number}}, got {json.dumps(payload)}")
    return {"n": n, "square": n * n}


def read_task(body, props):
    """(task id, envelope fields) of a delivery, bare or enveloped."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise Unreadable("MALFORMED_JSON", f"body is not valid UTF-8 JSON: {err}") from err
    if isinstance(data, dict) and "qtune" in data:
        version = data["qtune"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise Unreadable("INVALID_ENVELOPE", 'invalid envelope at "qtune": expected number')
        if version > PROTOCOL_VERSION:
            raise Unreadable(
                "UNSUPPORTED_VERSION",
                f"envelope version {version} is newer than the supported version {PROTOCOL_VERSION}",
            )
        if not isinstance(data.get("id"), str) or not data["id"]:
            raise Unreadable("INVALID_ENVELOPE", 'invalid envelope at "id": expected string')
        return data["id"], data
    task_id = props.message_id or f"bare-{secrets.token_hex(8)}"
    return task_id, {"id": task_id, "type": "task", "payload": data}


class Worker:
    def __init__(self, args):
        self.queue = args.queue
        self.results_queue = f"{args.queue}.results"
        self.dead_queue = f"{args.queue}.dead"
        self.max_attempts = args.max_attempts
        self.connection = connect(args.url)
        ensure_queue(self.connection, self.queue)
        ensure_queue(self.connection, self.results_queue)
        self.dead_declared = False
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        # Per consumer (global=False): quorum queues refuse a global prefetch.
        self.channel.basic_qos(prefetch_count=args.prefetch)
        self.done = 0

    def handle(self, method, props, body):
        headers = props.headers or {}
        # qtune's retries are copies counting earlier deliveries in x-qtune-delivered;
        # RabbitMQ counts this copy's returns to the queue in x-delivery-count.
        earlier = int(headers.get("x-qtune-delivered", 0))
        attempt = earlier + int(headers.get("x-delivery-count", 0)) + 1
        try:
            task_id, env = read_task(body, props)
        except Unreadable as err:
            self.dead_letter(method, props, body, f"{err.code}: {err}", attempt)
            return
        started = now_ms()
        try:
            value, error = compute(env.get("payload")), None
        except Exception as err:  # the handler failed
            value, error = None, err
        finished = now_ms()
        if error is not None and attempt < self.max_attempts:
            self.channel.basic_nack(method.delivery_tag, requeue=True)
            return
        result = {
            "taskId": task_id,
            "ok": error is None,
            "worker": WORKER,
            "startedAt": started,
            "finishedAt": finished,
            "durationMs": finished - started,
            "attempt": attempt,
        }
        for field in ("key", "task"):
            if env.get(field) is not None:
                result[field] = env[field]
        if error is None:
            result["value"] = value
        else:
            result["error"] = {"code": "HANDLER_FAILED", "message": str(error)}
        reply = envelope(
            "result",
            result,
            correlationId=task_id,
            key=env.get("key"),
            task=env.get("task"),
            headers=env.get("headers"),
        )
        # A direct reply-to requester: RabbitMQ put the real address in the property.
        if (props.reply_to or "").startswith("amq.rabbitmq.reply-to."):
            reply_to = props.reply_to
        else:
            reply_to = env.get("replyTo") or self.results_queue
        # The result first, confirmed; only then the ack (or the dead letter).
        publish(self.channel, reply_to, reply, properties(reply))
        if error is None:
            self.channel.basic_ack(method.delivery_tag)
        else:
            self.dead_letter(method, props, body, f"HANDLER_FAILED: {error}", attempt)

    def dead_letter(self, method, props, body, reason, attempt):
        if not self.dead_declared:
            ensure_queue(self.connection, self.dead_queue, dead_letter=True)
            self.dead_declared = True
        headers = dict(props.headers or {})
        headers.update(
            {
                "x-qtune-dead-reason": reason,
                "x-qtune-dead-queue": self.queue,
                "x-qtune-deliveries": attempt,
            }
        )
        dead_props = pika.BasicProperties(
            content_type=props.content_type,
            delivery_mode=2,
            message_id=props.message_id,
            correlation_id=props.correlation_id,
            reply_to=props.reply_to,
            type=props.type,
            timestamp=props.timestamp,
            priority=props.priority,
            headers=headers,
        )
        publish(self.channel, self.dead_queue, body, dead_props)
        self.channel.basic_ack(method.delivery_tag)
        print(f"dead-lettered {props.message_id}: {reason}", file=sys.stderr)

    def run(self, max_tasks=None, idle_exit=None):
        idle_since = time.monotonic()
        for method, props, body in self.channel.consume(self.queue, inactivity_timeout=0.5):
            if method is None:
                if idle_exit is not None and time.monotonic() - idle_since > idle_exit:
                    break
                continue
            self.handle(method, props, body)
            self.done += 1
            idle_since = time.monotonic()
            if max_tasks is not None and self.done >= max_tasks:
                break
        # Unacked deliveries still in the prefetch go back to the queue on cancel/close.
        self.channel.cancel()
        self.connection.close()


def main():
    parser = argparse.ArgumentParser(description="A qtune worker on RabbitMQ, with pika.")
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--queue", required=True, help="qtune queue name")
    parser.add_argument("--prefetch", type=int, default=10)
    parser.add_argument("--max-tasks", type=int, help="stop after this many deliveries")
    parser.add_argument("--idle-exit", type=float, help="stop after this many idle seconds")
    parser.add_argument("--max-attempts", type=int, default=3)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    worker = Worker(args)
    print(f"worker {WORKER['id']} consuming {args.queue}", file=sys.stderr, flush=True)
    try:
        worker.run(args.max_tasks, args.idle_exit)
    except KeyboardInterrupt:
        pass
    print(f"worker {WORKER['id']} handled {worker.done} deliveries", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
