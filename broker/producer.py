"""A Celery app for publishing only, and the settings every tokenbank Celery app shares.

``create_producer`` is what the web tier and the operators' CLI publish with: the broker, JSON,
the default queue and how a publish gives up. It loads no tasks and consumes nothing.
``worker.celery_app`` starts from ``shared_config`` and adds what only a consumer needs
(acknowledgement, prefetch, time limits, the visibility timeout, beat's schedule).
"""
from __future__ import annotations

from celery import Celery

from core.config import Settings

APP_NAME = "tokenbank"


def shared_config(settings: Settings) -> dict:
    """The settings producer and worker must agree on, and those that shape a publish."""
    return dict(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_default_queue=settings.celery_queue,
        # Fail fast on a dead broker: a publish that cannot connect raises within seconds.
        broker_transport_options={"socket_connect_timeout": 2, "socket_timeout": 5, "retry_on_timeout": False},
        # Publishing gives up fast: the web tier answers 503 and Stripe delivers again.
        task_publish_retry=True,
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
        # No task-sent event: it is a second broker publish per webhook (a quarter of the web
        # tier's CPU per request, measured in bench/). Flower still sees received, started,
        # retried, succeeded and failed, which the workers send.
        task_send_sent_event=False,
        broker_pool_limit=10,
    )


def create_producer(settings: Settings) -> Celery:
    """A Celery app that publishes tokenbank's tasks by name (``send_task``); it defines none."""
    app = Celery(APP_NAME, broker=settings.broker_url)
    app.conf.update(shared_config(settings))
    return app
