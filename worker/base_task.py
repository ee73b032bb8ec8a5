"""The one base task for money work: declared retry policy, deadline, dead letters.

A task body calls ``self.run_guarded(work, give_up)``. Transient failures (see
core.transient) retry with exponential backoff and full jitter up to ``max_retries``;
after the last try, or on a permanent error, ``give_up`` dead-letters the work and the
error propagates, so the task shows as failed in Flower. Nothing is swallowed.
"""
from __future__ import annotations

import logging
import random
import time
from typing import Any, Callable

from celery import Task

from core import metrics
from core.transient import transient_cause

log = logging.getLogger("tokenbank.tasks")


def backoff_seconds(retries: int, base: float, cap: float) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**retries)]."""
    return random.uniform(0, min(cap, base * (2 ** min(retries, 60))))


class MoneyTask(Task):
    acks_late = True
    reject_on_worker_lost = True
    typing = True

    def run_guarded(self, work: Callable[[], Any], give_up: Callable[[BaseException, int], Any], context: dict) -> Any:
        settings = self.app.tokenbank_settings
        attempt = self.request.retries + 1
        started = time.perf_counter()
        try:
            result = work()
        except Exception as exc:
            cause = transient_cause(exc)
            transient = cause is not None
            if transient and self.request.retries < settings.task_max_retries:
                countdown = backoff_seconds(self.request.retries, settings.task_retry_backoff_seconds,
                                            settings.task_retry_backoff_max_seconds)
                metrics.TASK_RETRIES.labels(self.name).inc()
                metrics.TASK_SECONDS.labels(self.name, "retry").observe(time.perf_counter() - started)
                log.warning("transient failure, retrying in %.2fs: %s: %s", countdown, type(cause).__name__, cause,
                            extra={**context, "attempt": attempt, "task_id": self.request.id})
                raise self.retry(exc=exc, countdown=countdown, max_retries=settings.task_max_retries)
            log.error("giving up after %d attempt(s): %s", attempt, exc, exc_info=True,
                      extra={**context, "attempt": attempt, "transient": transient, "task_id": self.request.id})
            metrics.TASK_SECONDS.labels(self.name, "failed").observe(time.perf_counter() - started)
            give_up(exc, attempt)
            raise
        metrics.TASK_SECONDS.labels(self.name, "done").observe(time.perf_counter() - started)
        log.debug("task done", extra={**context, "attempt": attempt, "task_id": self.request.id,
                                     "duration_ms": round((time.perf_counter() - started) * 1000, 2)})
        return result
