"""Reading Stripe's invoices, subscriptions, charges and disputes: pure, defensive readers.

Everything here reads untrusted data that arrived in a verified event or from Stripe's API;
a field of the wrong type reads as absent. API 2026-10-28: an invoice's subscription is
under ``parent.subscription_details`` and its payments under ``payments`` (no top-level
``payment_intent``/``charge``); a subscription's period end is on its items.
"""
from __future__ import annotations

from typing import Any, Mapping

from core.domain.ids import is_valid_doc_id


def mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def ref_id(value: object) -> str | None:
    """An id field that may be expanded into its object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value and is_valid_doc_id(value) else None


def int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def text(value: object) -> str | None:
    return value[:200] if isinstance(value, str) else None if value is None else repr(value)[:200]


def invoice_subscription(invoice: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any]]:
    """The invoice's subscription id and that subscription's metadata, wherever Stripe put them.

    Newer API versions: ``parent.subscription_details.{subscription,metadata}``; older ones:
    ``subscription`` and ``subscription_details.metadata``; a subscription's line items also
    carry its metadata (``lines.data[0].metadata``). The first non-empty metadata wins.
    """
    parent_details = mapping(mapping(invoice.get("parent")).get("subscription_details"))
    old_details = mapping(invoice.get("subscription_details"))
    lines = mapping(invoice.get("lines")).get("data")
    first_line = mapping(lines[0]) if isinstance(lines, list) and lines else {}
    line_parent = mapping(mapping(first_line.get("parent")).get("subscription_item_details"))
    sub_id = next((s for s in (ref_id(parent_details.get("subscription")), ref_id(invoice.get("subscription")),
                               ref_id(first_line.get("subscription")), ref_id(line_parent.get("subscription")))
                   if s), None)
    metadata = next((m for m in (mapping(parent_details.get("metadata")), mapping(old_details.get("metadata")),
                                 mapping(first_line.get("metadata"))) if m), {})
    return sub_id, metadata


def invoice_payment_intent(invoice: Mapping[str, Any]) -> str | None:
    """The PaymentIntent that paid the invoice, if the object carries it (``payments`` is an
    includable list; older versions had a top-level ``payment_intent``)."""
    payments = mapping(invoice.get("payments")).get("data")
    for item in payments if isinstance(payments, list) else []:
        payment = mapping(mapping(item).get("payment"))
        if mapping(item).get("status") in (None, "paid") and payment.get("type") == "payment_intent":
            found = ref_id(payment.get("payment_intent"))
            if found:
                return found
    return ref_id(invoice.get("payment_intent"))


def invoice_period_end(invoice: Mapping[str, Any]) -> int | None:
    """The end of the service period paid for: the first line's ``period.end`` (else the invoice's)."""
    lines = mapping(invoice.get("lines")).get("data")
    if isinstance(lines, list) and lines:
        end = int_or_none(mapping(mapping(lines[0]).get("period")).get("end"))
        if end is not None:
            return end
    return int_or_none(invoice.get("period_end"))


def current_period_end(sub: Mapping[str, Any]) -> int | None:
    """``current_period_end``: on the subscription (older API versions) or its first item (newer)."""
    value = int_or_none(sub.get("current_period_end"))
    if value is not None:
        return value
    items = mapping(sub.get("items")).get("data")
    if isinstance(items, list) and items and isinstance(items[0], Mapping):
        return int_or_none(items[0].get("current_period_end"))
    return None


def user_problem(user_id: object) -> tuple[str, str] | None:
    if user_id in (None, ""):
        return "missing_user", "no metadata.userId"
    if not is_valid_doc_id(user_id):
        return "invalid_user", "metadata.userId is not a valid document id"
    return None


def named_user(obj: Mapping[str, Any]) -> str | None:
    """The tokenbank user an event's object names, for finding the event by user — not a
    decision about money (the handlers validate who is credited): a Checkout Session's
    ``client_reference_id``, else ``metadata.userId`` of the object, else an invoice's
    subscription metadata. None when none is a valid id."""
    sub_metadata = invoice_subscription(obj)[1] if obj.get("object") == "invoice" else {}
    for candidate in (obj.get("client_reference_id"), mapping(obj.get("metadata")).get("userId"),
                      sub_metadata.get("userId")):
        if isinstance(candidate, str) and is_valid_doc_id(candidate):
            return candidate
    return None
