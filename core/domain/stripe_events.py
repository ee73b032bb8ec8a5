"""Stripe events as tokenbank sees them: their type names and the one way a body is read.

The web tier and the worker both read a body with ``parse_event``; which types are handled
is the handler registry's answer (core/handlers/registry.py), nowhere else."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from core.domain.errors import MalformedEvent
from core.domain.ids import is_valid_doc_id

CHECKOUT_COMPLETED = "checkout.session.completed"
CHECKOUT_ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
CHECKOUT_ASYNC_FAILED = "checkout.session.async_payment_failed"
CHECKOUT_EXPIRED = "checkout.session.expired"

CHARGE_REFUNDED = "charge.refunded"
DISPUTE_CREATED = "charge.dispute.created"
DISPUTE_CLOSED = "charge.dispute.closed"
# Token plans (core/handlers/plans.py)
SUBSCRIPTION_CREATED = "customer.subscription.created"
SUBSCRIPTION_UPDATED = "customer.subscription.updated"
SUBSCRIPTION_DELETED = "customer.subscription.deleted"
INVOICE_PAID = "invoice.paid"
INVOICE_PAYMENT_FAILED = "invoice.payment_failed"



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
        except (ValueError, UnicodeDecodeError, RecursionError):  # (nested past the parser's depth)
            raise MalformedEvent("body is not JSON") from None
    else:
        raw = payload
    if not isinstance(raw, dict):
        raise MalformedEvent("body is not a Stripe event")
    event_id, event_type = raw.get("id"), raw.get("type")
    if not is_valid_doc_id(event_id):
        raise MalformedEvent("body is not a Stripe event")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEvent("body is not a Stripe event")
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
