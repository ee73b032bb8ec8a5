"""The worker trusts only what it verified: a Stripe event job is checked again before any money moves.

Whoever can reach the broker (or Flower's API) can publish a job. So the worker verifies the
Stripe-Signature header that travelled with the body against the configured secrets — with
no time tolerance, since a job may legitimately wait in the queue, be retried or be replayed
from a dead letter days later — and checks that the job's event id and type are the body's.
Anything else credits nothing: one alert per forged body (keyed by its digest, so a flood of
the same message is one document), a log line, and an UnverifiedJob that is never retried
and never dead-lettered (a dead letter would store the forger's payload for replay).
"""
from __future__ import annotations

import hashlib
import logging

from core import metrics
from core.domain.errors import UnverifiedJob
from core.domain.records import Alert
from core.domain.stripe_events import StripeEvent, parse_event
from core.errors import WebhookRefused

log = logging.getLogger("tokenbank.worker_verification")


def verified_event(deps, event_id: object, event_type: object, payload: object, signature: object) -> StripeEvent:
    """The job's event, if its signature and ids hold; else an alert and UnverifiedJob."""
    if not isinstance(payload, str):
        return _refuse(deps, "payload is not a string", event_id, repr(payload)[:2000])
    if not isinstance(signature, str) or not signature:
        return _refuse(deps, "no Stripe-Signature with the job", event_id, payload)
    try:
        deps.verify_webhook(payload, signature, deps.settings.stripe_webhook_secrets, None)
    except WebhookRefused as refused:
        return _refuse(deps, f"signature: {refused.reason}", event_id, payload)
    event = parse_event(payload)  # signed by Stripe but unreadable: MalformedEvent, dead-lettered with the reason
    if (event.id, event.type) != (event_id, event_type):
        return _refuse(deps, "the job's event id or type is not the body's", event_id, payload)
    return event


def _refuse(deps, reason: str, event_id: object, payload: str):
    digest = hashlib.sha256(payload.encode("utf-8", "replace")).hexdigest()[:32]
    metrics.UNVERIFIED_JOBS.labels(reason.split(":")[0]).inc()
    log.error("unverified job refused: %s", reason, extra={"event_id": str(event_id)[:200], "digest": digest})
    deps.store.add_alert(Alert(f"unverified_job_{digest}", "unverified_job", None,
                               {"reason": reason, "claimedEventId": str(event_id)[:200], "payloadDigest": digest}))
    raise UnverifiedJob(reason)
