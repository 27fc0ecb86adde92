#!/usr/bin/env python3
"""End-to-end throughput of Celery on RabbitMQ: N no-op tasks, results read back.

Starts one Celery worker (`celery -A celery_noop_tasks worker --pool prefork --concurrency W`)
on a fresh queue of the RabbitMQ at --url, waits for it to answer one warm-up task, then sends N
no-op tasks with `apply_async` and reads every result through the rpc:// backend
(`ResultSet.join_native`). Tasks are acknowledged late (`task_acks_late=True`), after they ran.
tasks/s counts from the first publish to the last result read.

    /usr/bin/python3 bench/peers/celery_e2e.py --url amqp://guest:guest@127.0.0.1:5672 \
        --tasks 20000 --workers 2 [--prefetch-multiplier 4] [--json]

Prints a short report, or with --json one line: {"system": "celery", "version", "mode",
"tasks", "workers", "prefetchMultiplier", "received", "seconds", "publishSeconds" (time to
send all tasks), "tasksPerSec", "startLatencyMs": {"p50",
"p99"}, "e2eLatencyMs": {"p50", "p99"}} (latencies from publish to task start and to result
read, in ms).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, max(0, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return round(sorted_values[i], 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672"))
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2, help="prefork processes (--concurrency)")
    parser.add_argument("--prefetch-multiplier", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for results")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    queue = f"bench.celery.{uuid.uuid4().hex[:8]}"
    env = dict(
        os.environ,
        CELERY_BENCH_BROKER=args.url,
        CELERY_BENCH_QUEUE=queue,
        CELERY_BENCH_PREFETCH_MULTIPLIER=str(args.prefetch_multiplier),
        PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    os.environ.update(env)
    sys.path.insert(0, HERE)
    import celery
    from celery.result import ResultSet

    from celery_noop_tasks import app, noop

    worker = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "celery_noop_tasks", "worker",
            "--pool", "prefork", "--concurrency", str(args.workers), "-Q", queue,
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", "WARNING",
        ],
        cwd=HERE,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=sys.stderr,
        start_new_session=True,
    )

    def stop_worker():
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()

    def on_signal(signum, _frame):
        stop_worker()
        sys.exit(130)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        # Warm-up: the worker is up and consuming once it answers one task.
        noop.apply_async().get(timeout=120)

        published = {}
        results = []
        t0 = time.time() * 1000
        for _ in range(args.tasks):
            r = noop.apply_async()
            published[r.id] = time.time() * 1000
            results.append(r)
        published_all = time.time() * 1000
        start_lat = []
        e2e_lat = []
        last = [t0]

        def on_result(task_id, value):
            t = time.time() * 1000
            sent = published.get(task_id)
            if sent is None:
                return
            e2e_lat.append(t - sent)
            start_lat.append(value["startedAt"] - sent)
            last[0] = t

        ResultSet(results).join_native(callback=on_result, timeout=args.timeout)
        seconds = (last[0] - t0) / 1000
        start_lat.sort()
        e2e_lat.sort()
        out = {
            "system": "celery",
            "version": celery.__version__,
            "mode": "throughput",
            "tasks": args.tasks,
            "workers": args.workers,
            "prefetchMultiplier": args.prefetch_multiplier,
            "received": len(e2e_lat),
            "seconds": round(seconds, 3),
            "publishSeconds": round((published_all - t0) / 1000, 3),
            "tasksPerSec": round(args.tasks / seconds, 1),
            "startLatencyMs": {"p50": percentile(start_lat, 50), "p99": percentile(start_lat, 99)},
            "e2eLatencyMs": {"p50": percentile(e2e_lat, 50), "p99": percentile(e2e_lat, 99)},
        }
    finally:
        stop_worker()
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
    if out["received"] != args.tasks:
        print(f"celery: only {out['received']} of {args.tasks} results", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"celery {out['version']} on RabbitMQ: {args.tasks} tasks, 1 worker x {args.workers} prefork processes\n"
            f"  throughput      {out['tasksPerSec']:.0f} tasks/s ({out['seconds']:.3f} s)\n"
            f"  publish->start  p50 {out['startLatencyMs']['p50']} ms  p99 {out['startLatencyMs']['p99']} ms\n"
            f"  publish->result p50 {out['e2eLatencyMs']['p50']} ms  p99 {out['e2eLatencyMs']['p99']} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
