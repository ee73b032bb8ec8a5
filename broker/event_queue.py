"""The queue ports on Celery: publish work to the workers by stable task name (web tier, CLI and jobs).

``CeleryEventQueue`` is core.ports.EventQueue (Stripe events, fulfilments) and core.ports.OutboxQueue
(an account's fan-out, an endpoint's delivery run)."""
from __future__ import annotations

from celery import Celery

from broker import task_names


class CeleryEventQueue:
    def __init__(self, celery: Celery):
        self.celery = celery
        self.queue = celery.conf.task_default_queue

    def enqueue_event(self, event_id: str, event_type: str, payload: str, signature: str) -> None:
        # send_task returns once the broker holds the message (a Redis LPUSH). The Stripe-Signature
        # header travels with the body: the worker verifies it again before any money moves.
        self.celery.send_task(task_names.PROCESS_STRIPE_EVENT, args=[event_id, event_type, payload, signature],
                              queue=self.queue)

    def ping(self) -> None:
        """A round trip to the broker on a pooled connection (a readiness probe must not open,
        and leave to the server to reap, a new connection on every call)."""
        with self.celery.pool.acquire(block=True, timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            conn.default_channel.client.ping()

    def request_fulfilment(self, session_id: str, source: str) -> None:
        self.celery.send_task(task_names.FULFIL_CHECKOUT_SESSION, args=[session_id, source], queue=self.queue)

    def request_invoice_fulfilment(self, invoice_id: str, source: str) -> None:
        self.celery.send_task(task_names.FULFIL_INVOICE, args=[invoice_id, source], queue=self.queue)

    def request_fan_out(self, user_id: str, up_to_seq: int | None = None) -> None:
        self.celery.send_task(task_names.OUTBOX_FAN_OUT, args=[user_id, up_to_seq], queue=self.queue)

    def request_delivery(self, endpoint_id: str, countdown: float = 0, expires: float | None = None) -> None:
        self.celery.send_task(task_names.OUTBOX_DELIVER, args=[endpoint_id], queue=self.queue,
                              countdown=countdown or None, expires=expires)
