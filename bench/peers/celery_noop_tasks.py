"""Celery app for bench/peers/celery_e2e.py: one no-op task on RabbitMQ, results over rpc://.

Configured from the environment so that the producer and the worker it starts agree:
CELERY_BENCH_BROKER (AMQP URL), CELERY_BENCH_QUEUE (queue name) and, optionally,
CELERY_BENCH_PREFETCH_MULTIPLIER (Celery's default, 4, when unset).
"""
import os
import time

from celery import Celery

app = Celery(
    "celery_noop_tasks",
    broker=os.environ.get("CELERY_BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    backend="rpc://",
)
app.conf.update(
    task_acks_late=True,
    task_default_queue=os.environ.get("CELERY_BENCH_QUEUE", "celery"),
    worker_prefetch_multiplier=int(os.environ.get("CELERY_BENCH_PREFETCH_MULTIPLIER", "4")),
    result_persistent=False,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")
def noop():
    """Returns when it started (epoch ms) and does nothing else."""
    return {"ok": True, "startedAt": time.time() * 1000}
