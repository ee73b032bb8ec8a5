"""The worker's Celery application: the shared broker settings plus delivery guarantees.

``create_celery`` is used by the worker (``celery -A worker.celery_app worker``), beat and
Flower. Publishers (web tier, CLI) use ``broker.producer.create_producer``; both start from
``broker.producer.shared_config``. Reliability settings added here:
- acks_late + reject_on_worker_lost: a task whose worker dies is delivered again;
- prefetch 1: a worker holds one unacknowledged message per process;
- a hard time limit requeues the message (acks_on_timeout off);
- the hard time limit stays well under the broker's visibility timeout, so a slow task is
  never redelivered while it still runs (checked in core.config).
"""
from __future__ import annotations


from celery import Celery

from broker.producer import APP_NAME, shared_config
from broker.task_names import JOB_AUDIT, JOB_EXPIRE, JOB_RECONCILE, JOB_SWEEP_INBOX, JOB_SWEEP_OUTBOX
from core.config import Settings
from core.bootstrap import process_settings
from core.services.expiry import EXPIRY_EVERY_SECONDS


def create_celery(settings: Settings) -> Celery:
    app = Celery(APP_NAME, broker=settings.broker_url, include=["worker.tasks", "worker.outbox_tasks"])
    config = shared_config(settings)
    config["broker_transport_options"] = {
        **config["broker_transport_options"],
        "visibility_timeout": settings.broker_visibility_timeout_seconds,
        # Sweep for messages whose worker died every 10 s (kombu's default is every 100 s),
        # so an orphaned event is redelivered within visibility_timeout + 10 s.
        "unacked_restore_interval": 10,
        "unacked_restore_throttle": 1,
    }
    app.conf.update(
        config,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # A task that failed has already retried or dead-lettered its work: ack it. A task
        # killed by the hard time limit has done neither: requeue it, never lose it.
        task_acks_on_failure=True,
        task_acks_on_timeout=False,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.task_soft_time_limit_seconds,
        task_time_limit=settings.task_time_limit_seconds,
        broker_connection_retry_on_startup=True,
        worker_send_task_events=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    app.conf.beat_schedule = {
        "reconcile-with-stripe": {"task": JOB_RECONCILE, "schedule": 15 * 60.0},
        "audit-balances": {"task": JOB_AUDIT, "schedule": 24 * 3600.0},
        "expire-holds-and-lots": {"task": JOB_EXPIRE, "schedule": float(EXPIRY_EVERY_SECONDS),
                                  "options": {"expires": float(EXPIRY_EVERY_SECONDS)}},
        "sweep-inbox": {"task": JOB_SWEEP_INBOX, "schedule": float(settings.inbox_sweep_every_seconds),
                        "options": {"expires": float(settings.inbox_sweep_every_seconds)}},
        "sweep-outbox": {"task": JOB_SWEEP_OUTBOX, "schedule": float(settings.outbox_sweep_every_seconds),
                         "options": {"expires": float(settings.outbox_sweep_every_seconds)}},
    }
    app.tokenbank_settings = settings
    return app


# The module-level app the celery command line loads (`celery -A worker.celery_app`).
# Creating it reads configuration only; no client connects until a worker process starts.
app = create_celery(process_settings())
