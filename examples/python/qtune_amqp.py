"""What a plain AMQP client needs to talk to qtune over RabbitMQ (docs/protocol.md,
"On RabbitMQ (AMQP 0-9-1)"), shared by producer.py and worker.py.

Queues are declared the way qtune declares them, durable quorum queues:
- a queue NAME (tasks or results): durable, not exclusive, not auto-delete, arguments
  {"x-queue-type": "quorum", "x-dead-letter-exchange": "", "x-dead-letter-routing-key":
  "NAME.dead", "x-delivery-limit": 5, "x-dead-letter-strategy": "at-least-once",
  "x-overflow": "reject-publish"}, together with its dead-letter queue NAME.dead;
- a dead-letter queue: durable, arguments {"x-queue-type": "quorum"}.
A queue that already exists is used as it is: it is checked with a passive declaration first,
so an existing queue is never re-declared with different arguments.
"""
import json
import time
import uuid

import pika
from pika.exceptions import ChannelClosedByBroker

PROTOCOL_VERSION = 1
MAX_DELIVERIES = 5


def queue_arguments(name):
    """The arguments qtune declares a task or result queue `name` with."""
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": f"{name}.dead",
        "x-delivery-limit": MAX_DELIVERIES,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


DEAD_QUEUE_ARGUMENTS = {"x-queue-type": "quorum"}


def connect(url):
    """A blocking connection to the RabbitMQ at `url` (amqp://user:pass@host:port/vhost)."""
    return pika.BlockingConnection(pika.URLParameters(url))


def _exists(connection, name):
    probe = connection.channel()
    try:
        probe.queue_declare(name, passive=True)
    except ChannelClosedByBroker as err:
        # The 404 closed the probe channel.
        if err.reply_code == 404:
            return False
        raise
    probe.close()
    return True


def _declare(connection, name, arguments):
    ch = connection.channel()
    try:
        ch.queue_declare(
            name, durable=True, exclusive=False, auto_delete=False, arguments=arguments
        )
    except ChannelClosedByBroker as err:
        # 406: someone declared it meanwhile with other arguments; it is used as it is.
        if err.reply_code != 406:
            raise
        return
    ch.close()


def ensure_queue(connection, name, dead_letter=False):
    """Declares `name` as qtune does unless it exists (then it is used as it is). A task or
    result queue comes with its dead-letter queue `name.dead`; `dead_letter=True` declares a
    dead-letter queue itself."""
    if dead_letter:
        if not _exists(connection, name):
            _declare(connection, name, DEAD_QUEUE_ARGUMENTS)
        return
    if not _exists(connection, name):
        _declare(connection, name, queue_arguments(name))
    if not _exists(connection, f"{name}.dead"):
        _declare(connection, f"{name}.dead", DEAD_QUEUE_ARGUMENTS)


def now_ms():
    return int(time.time() * 1000)


def envelope(type_, payload, **fields):
    """A version-1 envelope with a fresh id; `fields` adds replyTo, correlationId, key, ..."""
    env = {"qtune": PROTOCOL_VERSION, "id": str(uuid.uuid4()), "type": type_, "payload": payload}
    env["createdAt"] = now_ms()
    env.update({k: v for k, v in fields.items() if v is not None})
    return env


def properties(env=None, message_id=None, headers=None, reply_to=None):
    """The AMQP properties qtune puts on a message: persistent JSON, ids repeated from the body."""
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=2,
        message_id=message_id if message_id is not None else (env or {}).get("id"),
        correlation_id=(env or {}).get("correlationId"),
        reply_to=reply_to if reply_to is not None else (env or {}).get("replyTo"),
        type=(env or {}).get("type"),
        timestamp=int(time.time()),
        headers=headers,
    )


def publish(channel, queue, body, props):
    """Publishes through the default exchange, persistent and mandatory. The channel must be in
    confirm mode (channel.confirm_delivery()): this returns once RabbitMQ has the message and
    raises if it could not be routed or was refused."""
    channel.basic_publish(
        exchange="",
        routing_key=queue,
        body=body if isinstance(body, bytes) else json.dumps(body).encode("utf-8"),
        properties=props,
        mandatory=True,
    )
