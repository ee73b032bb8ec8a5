"""Dead letters: an event whose processing gave up is kept, with its error, for replay.

The first home is the event's ``stripe_events`` record (status ``dead_lettered``, the
payload and the error) plus a security alert. If Firestore itself is what failed, the
dead letter goes to a Redis list instead; if that fails too, the error propagates so the
broker keeps the message. Nothing is dropped silently.
"""
from __future__ import annotations

import json
import logging

from core import alerts, metrics, redis_keys
from core.deps import Deps
from core.domain.errors import MalformedEvent
from core.domain.stripe_events import parse_event
from core.domain.stripe_objects import named_user

log = logging.getLogger("tokenbank.dead_letters")


def dead_letter_event(deps: Deps, event_id: str, event_type: str, payload: str, error: BaseException, attempts: int,
                      signature: str | None = None) -> str:
    text = f"{type(error).__name__}: {error}"[:2000]
    context = {"event_id": event_id, "event_type": event_type, "error": text, "attempts": attempts}
    fields = {"type": event_type, "status": "dead_lettered", "error": text, "attempts": attempts, "payload": payload,
              "signature": signature}
    user_id = _named_user(payload)
    if user_id:  # support finds a user's dead letters by it (inbox records older than ``userId`` lack it)
        fields["userId"] = user_id
    try:
        deps.store.record_event(event_id, fields, alert=alerts.dead_lettered(event_id, event_type, text, user_id))
        metrics.DEAD_LETTERS.labels("firestore").inc()
        log.error("event dead-lettered", extra=context)
        return "firestore"
    except Exception as store_error:
        log.critical("dead letter could not be stored in Firestore (%s); spooling to Redis", store_error, extra=context)
    deps.redis.lpush(redis_keys.DEAD_LETTER_SPOOL, json.dumps({**context, "payload": payload, "signature": signature}))
    metrics.DEAD_LETTERS.labels("redis").inc()
    return "redis"


def _named_user(payload: str) -> str | None:
    try:
        return named_user(parse_event(payload).object)
    except MalformedEvent:
        return None
