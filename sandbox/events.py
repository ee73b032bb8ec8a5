"""Event objects: created, stored, serialised once, handed to the webhook dispatcher."""

from __future__ import annotations

import contextvars
import json
from dataclasses import dataclass

from . import objects
from .config import Config
from .store import Store, public
from .webhooks import Delivery, Dispatcher, RetryPolicy

# (request id, idempotency key) of the API request being served, for event.request
current_request: contextvars.ContextVar[tuple] = contextvars.ContextVar("current_request", default=(None, None))


@dataclass
class Sandbox:
    config: Config
    store: Store
    dispatcher: Dispatcher
    public_url: str

    @classmethod
    def create(cls, config: Config, public_url: str) -> "Sandbox":
        store = Store()
        policy = RetryPolicy(base_seconds=config.retry_base_seconds, max_seconds=config.retry_max_seconds,
                             max_attempts=config.max_attempts, timeout_seconds=config.webhook_timeout_seconds)
        sb = cls(config=config, store=store, dispatcher=None, public_url=public_url.rstrip("/"))  # type: ignore[arg-type]
        sb.dispatcher = Dispatcher(config.webhook_urls, config.webhook_secrets, policy,
                                   on_settled=lambda d: _settled(sb, d))
        return sb


def _settled(sb: Sandbox, delivery: Delivery) -> None:
    with sb.store.lock:
        ev = sb.store.get(delivery.event_id, "event")
        if ev is not None:
            ev["pending_webhooks"] = sum(
                1 for d in sb.dispatcher.deliveries_for(delivery.event_id) if d.status in ("pending", "failed"))


def serialise(obj: dict) -> bytes:
    return json.dumps(obj, indent=2).encode("utf-8")


def emit(sb: Sandbox, event_type: str, obj: dict, previous_attributes: dict | None = None) -> dict:
    """Records an event with a snapshot of `obj` and queues its delivery."""
    request_id, idem_key = current_request.get()
    with sb.store.lock:
        n = len(sb.dispatcher.urls)
        ev = objects.event(sb.store.now(), event_type, public(obj), sb.config.api_version, n,
                           request_id, idem_key, previous_attributes)
        body = serialise(ev)
        sb.store.add(ev)
        sb.dispatcher.enqueue(ev["id"], event_type, body)
        return ev


def matches_type(event_type: str, pattern: str) -> bool:
    """Stripe's `type` filter allows one `*` wildcard, e.g. `checkout.session.*`."""
    if "*" not in pattern:
        return event_type == pattern
    head, _, tail = pattern.partition("*")
    return event_type.startswith(head) and event_type.endswith(tail) and len(event_type) >= len(head) + len(tail)


def delivery_summary(sb: Sandbox, ev: dict) -> dict:
    deliveries = sb.dispatcher.deliveries_for(ev["id"])
    return {"id": ev["id"], "type": ev["type"], "created": ev["created"],
            "pending_webhooks": ev["pending_webhooks"],
            "data_object_id": ev["data"]["object"].get("id"),
            "deliveries": [d.as_dict() for d in deliveries]}
