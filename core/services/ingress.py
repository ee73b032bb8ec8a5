"""Webhook ingress: verify a Stripe delivery and hand it to the queue, nothing more.

The web tier calls ``receive`` with the raw body and the ``Stripe-Signature`` header.
A refused delivery raises WebhookRefused (4xx; nothing stored or enqueued). A verified event
is first written to the inbox (``stripe_events/{id}``: status ``received`` with its payload
and signature, or ``ignored`` for a type tokenbank does not act on; ``userId`` when the
object names one) in one Firestore write; only if that write fails does the caller answer
503 (EnqueueFailed), so Stripe delivers again. Then the job is enqueued; if the broker refuses, the answer is still 200, because
the inbox holds the event and the sweeper (core/services/inbox.py) enqueues it. A
redelivery of a known event only counts the delivery.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from core import alerts, metrics
from core.deps import Deps
from core.ports import EventQueue
from core.errors import EnqueueFailed, WebhookRefused
from core.domain.errors import MalformedEvent
from core.domain.records import IGNORED, RECEIVED
from core.domain.stripe_events import parse_event
from core.domain.stripe_objects import named_user
from core.handlers.registry import is_handled

log = logging.getLogger("tokenbank.webhook")


@dataclass(frozen=True)
class Received:
    event_id: str
    event_type: str
    handled: bool


def receive(deps: Deps, queue: EventQueue, body: bytes, header: str | None,
            alert_on_refusal: Callable[[str], None] | None = None) -> Received:
    try:
        return _receive(deps, queue, body, header)
    except WebhookRefused as refused:
        metrics.SIGNATURE_FAILURES.labels(refused.reason).inc()
        metrics.WEBHOOKS.labels("unknown", "refused").inc()
        log.warning("webhook refused: %s", refused.reason, extra={"status": refused.status})
        if alert_on_refusal is not None:
            alert_on_refusal(refused.reason)
        raise


def _receive(deps: Deps, queue: EventQueue, body: bytes, header: str | None) -> Received:
    settings = deps.settings
    if len(body) > settings.webhook_max_body_bytes:
        raise WebhookRefused(413, "body too large")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRefused(400, "body is not UTF-8") from None
    deps.verify_webhook(payload, header, settings.stripe_webhook_secrets, settings.webhook_tolerance_seconds)
    try:
        event = parse_event(payload)
    except MalformedEvent as exc:
        raise WebhookRefused(400, str(exc)) from None
    event_id, event_type = event.id, event.type
    handled = is_handled(event_type)
    context = {"event_id": event_id, "event_type": event_type}
    # The inbox: durable before the 200. Stripe never redelivers an event it got a 2xx for.
    fields = {"type": event_type, "status": RECEIVED if handled else IGNORED, "livemode": event.livemode,
              "eventCreated": event.created or None}
    if handled:
        fields.update(payload=payload, signature=header)
    user_id = named_user(event.object)
    if user_id:  # support finds a user's events by it, dead letters included (the handler may correct it)
        fields["userId"] = user_id
    try:
        new = deps.store.receive_event(event_id, fields)
    except Exception as exc:
        metrics.WEBHOOKS.labels(event_type if handled else "other", "not_accepted").inc()
        log.error("inbox write failed: %s", exc, extra=context)
        raise EnqueueFailed(f"inbox unavailable: {exc}") from exc
    if not handled or not new:  # ignored, or a redelivery of a known event: its record decides
        metrics.WEBHOOKS.labels(event_type if handled else "other", "redelivered" if handled else "ignored").inc()
        log.info("webhook accepted", extra={**context, "handled": handled, "new": new})
        return Received(event_id, event_type, handled)
    try:
        queue.enqueue_event(event_id, event_type, payload, header)
    except Exception as exc:
        # Answered 200 all the same: the inbox holds the event and the sweeper enqueues it.
        metrics.ENQUEUE_FAILURES.inc()
        metrics.WEBHOOKS.labels(event_type, "enqueue_failed").inc()
        log.error("enqueue failed: %s", exc, extra=context)
        return Received(event_id, event_type, handled)
    metrics.WEBHOOKS.labels(event_type, "enqueued").inc()
    log.info("webhook accepted", extra={**context, "handled": handled, "new": new})
    return Received(event_id, event_type, handled)


def signature_alert(deps: Deps) -> Callable[[str], None]:
    """The refusal hook the web tier uses: aggregated alerts, never a failure of its own."""
    def record(reason: str) -> None:
        try:
            alerts.webhook_signature_failure(deps.redis, deps.store, reason, {}, deps.clock())
        except Exception as exc:  # the 400 answer stands; the log line keeps the refusal
            log.error("could not record webhook refusal alert: %s", exc)
    return record
