"""The Celery application: broker, serializer and delivery guarantees in one place.

``create_celery`` is used by the worker (``celery -A worker.celery_app worker``) and,
as a producer only, by the web tier. Reliability settings:
- acks_late + reject_on_worker_lost: a task whose worker dies is delivered again;
- prefetch 1: a worker holds one unacknowledged message per process;
- a hard time limit requeues the message (acks_on_timeout off);
- JSON only, in and out;
- the hard time limit stays well under the broker's visibility timeout, so a slow task is
  never redelivered while it still runs (checked in core.config).
"""
from __future__ import annotations

import os

from celery import Celery

from core.config import Settings, load_settings
from core.secrets import with_secrets
from worker.task_names import JOB_AUDIT, JOB_RECONCILE


def create_celery(settings: Settings) -> Celery:
    app = Celery("tokenbank", broker=settings.broker_url, include=["worker.tasks"])
    transport = {
        "visibility_timeout": settings.broker_visibility_timeout_seconds,
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        "retry_on_timeout": False,
        # Sweep for messages whose worker died every 10 s (kombu's default is every 100 s),
        # so an orphaned event is redelivered within visibility_timeout + 10 s.
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
    }
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue=settings.celery_queue,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A task that failed has already retried or dead-lettered its work: ack it. A task
        # killed by the hard time limit has done neither: requeue it, never lose it.
        task_acks_on_failure=True,
        task_acks_on_timeout=False,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit_seconds,
        task_time_limit=settings.task_time_limit_seconds,
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        # Publishing gives up fast: the web tier answers 503 and Stripe delivers again.
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        worker_send_task_events=True,
        # No task-sent event: it is a second broker publish per webhook (a quarter of the web
        # tier's CPU per request, measured in bench/). Flower still sees received, started,
        # retried, succeeded and failed, which the workers send.
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        broker_pool_limit=10,
    )
    app.conf.beat_schedule = {
        "reconcile-with-stripe": {"task": JOB_RECONCILE, "schedule": 15 * 60.0},
        "audit-balances": {"task": JOB_AUDIT, "schedule": 24 * 3600.0},
    }
    app.tokenbank_settings = settings
    return app


# The module-level app the celery command line loads (`celery -A worker.celery_app`).
# Creating it reads configuration only; no client connects until a worker process starts.
app = create_celery(load_settings(with_secrets(os.environ)))
