"""Outgoing events, their cursors, webhook endpoints and deliveries as Firestore documents.

The codecs' document functions, registered in core/adapters/documents.py (CODECS) beside the
others. Collections: ``outbox`` (one event each), ``outbox_cursors`` (per account: the last seq
whose messages are queued), ``webhook_endpoints``, ``webhook_subscriptions/enabled`` (what the
enabled endpoints subscribed to, read by the fan-out) and ``deliveries``. All are server-only
(firestore.rules denies clients everything it does not name). No rule here: mapping only.
"""
from __future__ import annotations

from typing import Any, Mapping

from core.domain.deliveries import Delivery
from core.domain.outbox import AccountEvent, OutboxCursor
from core.domain.webhook_endpoints import Endpoint, SigningSecret, Subscriptions


def event_doc(e: AccountEvent) -> dict:
    return {"userId": e.user_id, "seq": e.seq, "type": e.type, "data": dict(e.data), "emittedAt": e.created_at,
            "dispatched": e.dispatched}


def event(key: str, doc: Mapping[str, Any]) -> AccountEvent:
    return AccountEvent(key, doc.get("userId") or "", int(doc.get("seq") or 0), doc.get("type") or "",
                        dict(doc.get("data") or {}), float(doc.get("emittedAt") or 0), bool(doc.get("dispatched")))


def cursor_doc(c: OutboxCursor) -> dict:
    return {"dispatchedSeq": c.dispatched_seq}


def cursor(key: str, doc: Mapping[str, Any]) -> OutboxCursor:
    return OutboxCursor(key, int(doc.get("dispatchedSeq") or 0))


_DELIVERY_FIELDS = (("endpointId", "endpoint_id"), ("messageId", "message_id"), ("eventId", "event_id"),
                    ("userId", "user_id"), ("seq", "seq"), ("position", "position"), ("type", "type"),
                    ("body", "body"), ("queuedAt", "queued_at"), ("status", "status"), ("attempts", "attempts"),
                    ("nextAttemptAt", "next_attempt_at"), ("windowFrom", "window_from"),
                    ("lastAttemptAt", "last_attempt_at"), ("lastStatus", "last_status"), ("lastError", "last_error"),
                    ("deliveredAt", "delivered_at"), ("deadLetteredAt", "dead_lettered_at"), ("replays", "replays"),
                    ("replayedBy", "replayed_by"))


def delivery_doc(d: Delivery) -> dict:
    return {name: getattr(d, attr) for name, attr in _DELIVERY_FIELDS}


def delivery(key: str, doc: Mapping[str, Any]) -> Delivery:
    return Delivery(key, **{attr: doc.get(name) for name, attr in _DELIVERY_FIELDS if doc.get(name) is not None})


_ENDPOINT_FIELDS = (("url", "url"), ("addedAt", "created_at"), ("addedBy", "created_by"),
                    ("lowThreshold", "low_threshold"), ("enabled", "enabled"), ("disabledAt", "disabled_at"),
                    ("disabledBy", "disabled_by"), ("rotatedAt", "rotated_at"), ("rotatedBy", "rotated_by"),
                    ("retryAt", "retry_at"), ("failingSince", "failing_since"), ("lastError", "last_error"))


def endpoint_doc(e: Endpoint) -> dict:
    return {**{name: getattr(e, attr) for name, attr in _ENDPOINT_FIELDS}, "events": list(e.events),
            "secrets": [{"secret": s.value, "createdAt": s.created_at, "expiresAt": s.expires_at} for s in e.secrets]}


def endpoint(key: str, doc: Mapping[str, Any]) -> Endpoint:
    secrets = tuple(SigningSecret(s["secret"], float(s.get("createdAt") or 0), s.get("expiresAt"))
                    for s in doc.get("secrets") or ())
    return Endpoint(key, events=tuple(doc.get("events") or ()), secrets=secrets,
                    **{attr: doc.get(name) for name, attr in _ENDPOINT_FIELDS if doc.get(name) is not None})


def subscriptions_doc(s: Subscriptions) -> dict:
    return {"endpoints": {k: {"events": list(events), "lowThreshold": threshold}
                          for k, (events, threshold) in s.endpoints.items()}}


def subscriptions(key: str, doc: Mapping[str, Any]) -> Subscriptions:
    return Subscriptions({k: (tuple(v.get("events") or ()), v.get("lowThreshold"))
                          for k, v in (doc.get("endpoints") or {}).items()})
