"""Security alerts: what they are called and how a flood of them stays small."""
from __future__ import annotations

import hashlib
from typing import Any, Mapping

from core import redis_keys
from core.domain.records import Alert

SIGNATURE_WINDOW_SECONDS = 60


def purchase_rejected(session_id: str, user_id: str | None, reason: str, detail: str, event_id: str | None) -> Alert:
    return Alert(f"purchase_rejected_{session_id}", "purchase_rejected", user_id,
                 {"checkoutSessionId": session_id, "reason": reason, "detail": detail, "stripeEventId": event_id})


def invalid_session_rejected(raw_session_id: object, user_id: str | None, reason: str, event_id: str | None) -> Alert:
    key = event_id or hashlib.sha256(repr(raw_session_id).encode()).hexdigest()[:32]
    return Alert(f"purchase_rejected_event_{key}", "purchase_rejected", user_id,
                 {"checkoutSessionId": repr(raw_session_id)[:200], "reason": reason, "stripeEventId": event_id})


def velocity_exceeded(session_id: str, user_id: str, last_hour: int, last_day: int, per_hour: int, per_day: int) -> Alert:
    return Alert(f"velocity_{session_id}", "purchase_velocity_exceeded", user_id,
                 {"checkoutSessionId": session_id, "lastHour": last_hour, "lastDay": last_day,
                  "limitPerHour": per_hour, "limitPerDay": per_day, "credited": True})


def dead_lettered(event_id: str, event_type: str, error: str, user_id: str | None = None) -> Alert:
    return Alert(f"dead_letter_{event_id}", "event_dead_lettered", user_id,
                 {"stripeEventId": event_id, "eventType": event_type, "error": error})


def _is_reportable(count: int) -> bool:
    """1, 10, 100, 1000, ...: the alert document is rewritten at each power of ten."""
    while count >= 10 and count % 10 == 0:
        count //= 10
    return count == 1


def webhook_signature_failure(redis, store, reason: str, details: Mapping[str, Any], now: float) -> Alert | None:
    """Count a refused webhook in Redis; write an alert only at powers of ten per minute.

    A flood of N forged requests in one minute costs N Redis increments and about
    log10(N) Firestore writes to one alert document per minute.
    """
    window = int(now) // SIGNATURE_WINDOW_SECONDS * SIGNATURE_WINDOW_SECONDS
    key = redis_keys.signature_failures(window)
    pipe = redis.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, SIGNATURE_WINDOW_SECONDS * 10)
    count = int(pipe.execute()[0])
    if not _is_reportable(count):
        return None
    alert = Alert(f"webhook_signature_{window}", "webhook_signature_failure", None,
                  {**details, "windowStart": window, "windowSeconds": SIGNATURE_WINDOW_SECONDS,
                   "count": count, "lastReason": reason})
    store.add_alert(alert)
    return alert
