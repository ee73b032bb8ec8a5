"""Stripe events as tokenbank sees them: which types it handles and how a body is read."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from core.errors import MalformedEvent
from core.ids import is_valid_doc_id

CHECKOUT_COMPLETED = "checkout.session.completed"
CHECKOUT_ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
CHECKOUT_ASYNC_FAILED = "checkout.session.async_payment_failed"
CHECKOUT_EXPIRED = "checkout.session.expired"

CHARGE_REFUNDED = "charge.refunded"
DISPUTE_CREATED = "charge.dispute.created"
DISPUTE_CLOSED = "charge.dispute.closed"
CHECKOUT_TYPES = frozenset({CHECKOUT_COMPLETED, CHECKOUT_ASYNC_SUCCEEDED, CHECKOUT_ASYNC_FAILED, CHECKOUT_EXPIRED})
REVERSAL_TYPES = frozenset({CHARGE_REFUNDED, DISPUTE_CREATED, DISPUTE_CLOSED})
# Token plans (core/subscriptions.py)
SUBSCRIPTION_CREATED = "customer.subscription.created"
SUBSCRIPTION_UPDATED = "customer.subscription.updated"
SUBSCRIPTION_DELETED = "customer.subscription.deleted"
INVOICE_PAID = "invoice.paid"
INVOICE_PAYMENT_FAILED = "invoice.payment_failed"
SUBSCRIPTION_TYPES = frozenset({SUBSCRIPTION_CREATED, SUBSCRIPTION_UPDATED, SUBSCRIPTION_DELETED,
                                INVOICE_PAID, INVOICE_PAYMENT_FAILED})

HANDLED_TYPES = CHECKOUT_TYPES | REVERSAL_TYPES | SUBSCRIPTION_TYPES


@dataclass(frozen=True)
class StripeEvent:
    id: str
    type: str
    created: int
    livemode: bool
    object: Mapping[str, Any]


def parse_event(payload: str | bytes | Mapping[str, Any]) -> StripeEvent:
    """Read a verified event body. Anything that is not an event object raises MalformedEvent."""
    if isinstance(payload, (str, bytes)):
        try:
            raw = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedEvent(f"body is not JSON: {exc}") from None
    else:
        raw = payload
    if not isinstance(raw, dict):
        raise MalformedEvent("body is not a JSON object")
    event_id, event_type = raw.get("id"), raw.get("type")
    if not is_valid_doc_id(event_id):
        raise MalformedEvent("event has no valid id")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEvent("event has no type")
    data = raw.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise MalformedEvent("event has no data.object")
    created = raw.get("created")
    return StripeEvent(
        id=event_id,
        type=event_type,
        created=created if isinstance(created, int) and not isinstance(created, bool) else 0,
        livemode=raw.get("livemode") is True,
        object=obj,
    )
