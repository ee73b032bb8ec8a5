"""Baseline Celery tasks, on an app configured exactly like tokenbank's (worker.celery_app.create_celery).

Run: celery -A bench.noop_celery worker -Q bench.noop ...  (its own queue: the benchmark keeps
this worker and tokenbank's idle side by side and alternates between them)

- ``bench.noop(event_id, event_type, payload)``: does nothing; same arguments (and message size)
  as tokenbank.stripe.process_event. The worker-throughput baseline.
- ``bench.stamp(bench_id, size)``: records the wall-clock time it ran in Redis (REDIS_URL),
  hash ``bench:stamps``. The end-to-end latency floor.
"""
from __future__ import annotations

import os
import time

from core.config import load_settings
from worker.celery_app import create_celery

QUEUE = "bench.noop"
NOOP = "bench.noop"
STAMP = "bench.stamp"
STAMPS_KEY = "bench:stamps"

settings = load_settings()
app = create_celery(settings)
app.conf.include = []  # the baseline worker must not load tokenbank's tasks

_redis = None
_pid = None


def _client():
    global _redis, _pid
    if _redis is None or _pid != os.getpid():
        import redis

        _redis, _pid = redis.Redis.from_url(settings.redis_url), os.getpid()
    return _redis


@app.task(name=NOOP)
def noop(event_id: str, event_type: str, payload: str) -> None:
    return None


@app.task(name=STAMP)
def stamp(bench_id: str, size: int) -> None:
    _client().hset(STAMPS_KEY, bench_id, repr(time.time()))
