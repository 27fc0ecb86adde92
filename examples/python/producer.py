#!/usr/bin/env python3
"""Submits tasks to a qtune queue on RabbitMQ with nothing but pika, and reads their results.

    python3 producer.py --url amqp://guest:guest@127.0.0.1:5672/%2F --queue squares \
        --tasks 10 [--envelope] [--timeout 60]

Declares, unless they exist, the task queue NAME and the result queue NAME.results (and their
dead-letter queues NAME.dead and NAME.results.dead) exactly as qtune does: durable quorum
queues, with the arguments listed in qtune_amqp.py. Publishes
task i with payload {"n": i}, persistent, mandatory, through the default exchange, waiting for
each publisher confirm. By default the body is the bare payload JSON (qtune reads a body that
is not an envelope as a task payload) with the AMQP message_id set to a fresh UUID, which
becomes the task id; with --envelope the body is a task envelope
{"qtune": 1, "id", "type": "task", "payload", "replyTo": "NAME.results"} and message_id = its id.

Then it consumes NAME.results, printing one JSON line per result of its own tasks (matched by
the result envelope's correlationId) and acking every message, until each task has a result
or --timeout seconds pass. A second result for the same task (a redelivered task) is printed
too and counted as a duplicate. Exits 0 when every task got exactly one result.
"""
import argparse
import json
import sys
import time
import uuid

from qtune_amqp import connect, ensure_queue, envelope, properties, publish


def main():
    parser = argparse.ArgumentParser(description="Submit tasks to qtune over RabbitMQ.")
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--queue", required=True, help="qtune queue name")
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--envelope", action="store_true", help="send envelopes, not bare JSON")
    parser.add_argument("--timeout", type=float, default=60, help="seconds to wait for results")
    args = parser.parse_args()

    queue, results_queue = args.queue, f"{args.queue}.results"
    connection = connect(args.url)
    ensure_queue(connection, queue)
    ensure_queue(connection, results_queue)
    channel = connection.channel()
    channel.confirm_delivery()

    pending = set()
    for i in range(args.tasks):
        payload = {"n": i}
        if args.envelope:
            env = envelope("task", payload, replyTo=results_queue)
            publish(channel, queue, env, properties(env))
            pending.add(env["id"])
        else:
            task_id = str(uuid.uuid4())
            publish(channel, queue, payload, properties(message_id=task_id))
            pending.add(task_id)
    print(f"published {args.tasks} task(s) to {queue}", file=sys.stderr)

    seen = {}
    channel.basic_qos(prefetch_count=100)
    deadline = time.monotonic() + args.timeout
    for method, props, body in channel.consume(results_queue, inactivity_timeout=0.5):
        if method is not None:
            env = json.loads(body)
            task_id = env.get("correlationId") or props.correlation_id
            if task_id in pending or task_id in seen:
                pending.discard(task_id)
                seen[task_id] = seen.get(task_id, 0) + 1
                print(json.dumps(env["payload"]), flush=True)
            channel.basic_ack(method.delivery_tag)
        if not pending or time.monotonic() > deadline:
            break
    channel.cancel()
    connection.close()

    duplicates = sum(count - 1 for count in seen.values())
    print(
        f"received {len(seen)} of {args.tasks} result(s), {duplicates} duplicate(s)",
        file=sys.stderr,
    )
    return 0 if not pending and duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
