"""Token plans: Stripe subscriptions mirrored onto the user, and one allowance per paid invoice.

A plan is bought through a ``mode=subscription`` Checkout Session (``start_plan_checkout``)
whose subscription carries ``metadata.userId`` and ``metadata.planId``. From then on:

- ``customer.subscription.created/updated/deleted`` are mirrored to ``users/{uid}.subscription``;
  events arrive out of order, so a stored state is only replaced by a newer event's
  (``LedgerStore.mirror_subscription`` compares ``event.created`` in its transaction).
- ``invoice.paid`` credits the plan's allowance once per invoice: one
  ``subscription_allowance`` ledger entry with the deterministic id ``subscription_<invoice>``.
- ``invoice.payment_failed`` marks the subscription ``past_due`` and raises an alert.
- The plan's own Checkout Session events only free or fill the purchase-gate place: the
  tokens come with the first ``invoice.paid``.

Anything that cannot be attributed to a valid user, names an unknown plan, or disagrees
with the catalog's price is recorded as ``rejected`` with a security alert and never
retried: it is not a failure that time fixes.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from core import purchase_gate
from core.catalog import Plan
from core.checkout import CheckoutSession, resolve_user_id
from core.deps import Deps
from core.errors import MalformedEvent, PurchaseRejected
from core.outcome import Outcome
from core.ids import is_valid_doc_id
from core.store import Alert, EntryRequest
from core.stripe_events import (
    CHECKOUT_ASYNC_SUCCEEDED, CHECKOUT_COMPLETED, CHECKOUT_EXPIRED, INVOICE_PAID, INVOICE_PAYMENT_FAILED,
    SUBSCRIPTION_CREATED, SUBSCRIPTION_DELETED, SUBSCRIPTION_UPDATED, StripeEvent,
)
from core.user_lock import user_lock
from core.velocity import record_purchase

log = logging.getLogger("tokenbank.subscriptions")

ENTRY_TYPE = "subscription_allowance"
CREDITED_BILLING_REASONS = ("subscription_create", "subscription_cycle")
PAST_DUE, CANCELED = "past_due", "canceled"
MIRRORED_FIELDS = ("id", "status", "plan", "currentPeriodEnd", "cancelAtPeriodEnd")


def allowance_entry_id(invoice_id: str) -> str:
    return f"subscription_{invoice_id}"


def is_plan_session(obj: Mapping[str, Any]) -> bool:
    """A Checkout Session started by ``start_plan_checkout`` (mode subscription, a planId)."""
    metadata = obj.get("metadata")
    return obj.get("mode") == "subscription" and isinstance(metadata, Mapping) and "planId" in metadata


# -- alerts ---------------------------------------------------------------------------
def subscription_rejected_alert(event: StripeEvent, subscription_id: object, user_id: object, reason: str,
                                detail: str) -> Alert:
    return Alert(f"subscription_rejected_{event.id}", "subscription_rejected", _user_or_none(user_id),
                 {"subscriptionId": _text(subscription_id), "eventType": event.type, "reason": reason,
                  "detail": detail, "stripeEventId": event.id, "claimedUserId": _text(user_id)})


def invoice_rejected_alert(event: StripeEvent, invoice_id: str, subscription_id: str | None, user_id: object,
                           reason: str, detail: str) -> Alert:
    return Alert(f"subscription_invoice_rejected_{invoice_id}", "subscription_invoice_rejected",
                 _user_or_none(user_id),
                 {"invoiceId": invoice_id, "subscriptionId": subscription_id, "eventType": event.type,
                  "reason": reason, "detail": detail, "stripeEventId": event.id, "claimedUserId": _text(user_id)})


def payment_failed_alert(event: StripeEvent, invoice: Mapping[str, Any], invoice_id: str,
                         subscription_id: str | None, user_id: str, plan_id: str | None) -> Alert:
    return Alert(f"subscription_payment_failed_{invoice_id}", "subscription_payment_failed", user_id,
                 {"invoiceId": invoice_id, "subscriptionId": subscription_id, "planId": plan_id,
                  "amountDue": _int_or_none(invoice.get("amount_due")), "currency": _text(invoice.get("currency")),
                  "attemptCount": _int_or_none(invoice.get("attempt_count")),
                  "nextPaymentAttempt": _int_or_none(invoice.get("next_payment_attempt")),
                  "stripeEventId": event.id})


# -- customer.subscription.created / updated / deleted --------------------------------
def subscription_changed(deps: Deps, event: StripeEvent) -> Outcome:
    """Mirror the subscription onto its user, unless a newer event already did."""
    sub = event.object
    sub_id = sub.get("id")
    if not isinstance(sub_id, str) or not sub_id:
        raise MalformedEvent("subscription has no id")
    metadata = _mapping(sub.get("metadata"))
    user_id = metadata.get("userId")
    problem = _user_problem(user_id)
    if problem:
        return _reject_subscription(deps, event, sub_id, user_id, *problem)
    plan = deps.catalog.plan(metadata.get("planId"))
    status = CANCELED if event.type == SUBSCRIPTION_DELETED else _text(sub.get("status"))
    fields = {
        "id": sub_id,
        "status": status,
        "plan": plan.id if plan else None,
        "currentPeriodEnd": current_period_end(sub),
        "cancelAtPeriodEnd": sub.get("cancel_at_period_end") is True,
    }
    applied = deps.store.mirror_subscription(user_id, fields, event.created)
    outcome = "mirrored" if applied else "stale"
    deps.store.record_event(event.id, {"type": event.type, "status": "processed", "outcome": outcome,
                                       "userId": user_id, "subscriptionId": sub_id})
    log.info("subscription %s", "mirrored" if applied else "event older than the stored one: skipped",
             extra={"event_id": event.id, "user_id": user_id, "subscription_id": sub_id,
                    "subscription_status": status, "plan_id": fields["plan"]})
    return Outcome(outcome if applied else "skipped", None, user_id, reason=None if applied else "stale_event")


def current_period_end(sub: Mapping[str, Any]) -> int | None:
    """``current_period_end``: on the subscription (older API versions) or its first item (newer)."""
    value = _int_or_none(sub.get("current_period_end"))
    if value is not None:
        return value
    items = _mapping(sub.get("items")).get("data")
    if isinstance(items, list) and items and isinstance(items[0], Mapping):
        return _int_or_none(items[0].get("current_period_end"))
    return None


def _reject_subscription(deps: Deps, event: StripeEvent, sub_id: str, user_id: object, reason: str,
                         detail: str) -> Outcome:
    log.warning("subscription event rejected: %s", detail,
                extra={"event_id": event.id, "subscription_id": sub_id, "reason": reason})
    deps.store.record_event(event.id, {"type": event.type, "status": "processed", "outcome": "rejected",
                                       "reason": reason, "subscriptionId": sub_id},
                            alert=subscription_rejected_alert(event, sub_id, user_id, reason, detail))
    return Outcome("rejected", None, _user_or_none(user_id), reason=reason)


# -- invoice.paid ---------------------------------------------------------------------
def invoice_paid(deps: Deps, event: StripeEvent) -> Outcome:
    """Credit the plan's allowance for this invoice, once, if it matches the catalog."""
    invoice = event.object
    invoice_id = _invoice_id(invoice)
    sub_id, metadata = invoice_subscription(invoice)
    if sub_id is None and not metadata:
        return _not_a_plan_invoice(deps, event, invoice_id)
    user_id, plan_id = metadata.get("userId"), metadata.get("planId")
    problem = _user_problem(user_id)
    if problem:
        return _reject_invoice(deps, event, invoice_id, sub_id, user_id, *problem)
    plan = deps.catalog.plan(plan_id)
    if plan is None:
        return _reject_invoice(deps, event, invoice_id, sub_id, user_id, "unknown_plan",
                               f"metadata.planId {plan_id!r} is not in the catalog")
    problem = _invoice_problem(invoice, plan)
    if problem:
        return _reject_invoice(deps, event, invoice_id, sub_id, user_id, *problem)
    request = EntryRequest(allowance_entry_id(invoice_id), user_id, ENTRY_TYPE, plan.tokens_per_period, {
        "invoiceId": invoice_id,
        "subscriptionId": sub_id,
        "planId": plan.id,
        "amountPaid": invoice["amount_paid"],
        "currency": plan.currency,
        "billingReason": invoice.get("billing_reason"),
        "stripeEventId": event.id,
        "source": "webhook",
        "periodEnd": invoice_period_end(invoice),
    })
    settings = deps.settings
    with user_lock(deps.redis, user_id, settings.user_lock_ttl_ms, settings.user_lock_wait_seconds):
        result = deps.store.post_entry(request)
    outcome = "credited" if result.created else "already_fulfilled"
    deps.store.record_event(event.id, {"type": event.type, "status": "processed", "outcome": outcome,
                                       "userId": user_id, "invoiceId": invoice_id, "subscriptionId": sub_id,
                                       "entryId": result.entry_id})
    log.info("plan allowance %s", "credited" if result.created else "already credited",
             extra={"event_id": event.id, "user_id": user_id, "invoice_id": invoice_id, "plan_id": plan.id,
                    "tokens": plan.tokens_per_period, "balance_after": result.balance_after})
    if result.created:
        return Outcome("credited", None, user_id, result.balance_after)
    return Outcome("already_fulfilled", None, user_id)


def invoice_subscription(invoice: Mapping[str, Any]) -> tuple[str | None, Mapping[str, Any]]:
    """The invoice's subscription id and that subscription's metadata, wherever Stripe put them.

    Newer API versions: ``parent.subscription_details.{subscription,metadata}``; older ones:
    ``subscription`` and ``subscription_details.metadata``; a subscription's line items also
    carry its metadata (``lines.data[0].metadata``). The first non-empty metadata wins.
    """
    parent_details = _mapping(_mapping(invoice.get("parent")).get("subscription_details"))
    old_details = _mapping(invoice.get("subscription_details"))
    lines = _mapping(invoice.get("lines")).get("data")
    first_line = _mapping(lines[0]) if isinstance(lines, list) and lines else {}
    line_parent = _mapping(_mapping(first_line.get("parent")).get("subscription_item_details"))
    sub_id = next((s for s in (_ref_id(parent_details.get("subscription")), _ref_id(invoice.get("subscription")),
                               _ref_id(first_line.get("subscription")), _ref_id(line_parent.get("subscription")))
                   if s), None)
    metadata = next((m for m in (_mapping(parent_details.get("metadata")), _mapping(old_details.get("metadata")),
                                 _mapping(first_line.get("metadata"))) if m), {})
    return sub_id, metadata


def invoice_period_end(invoice: Mapping[str, Any]) -> int | None:
    """The end of the service period paid for: the first line's ``period.end`` (else the invoice's)."""
    lines = _mapping(invoice.get("lines")).get("data")
    if isinstance(lines, list) and lines:
        end = _int_or_none(_mapping(_mapping(lines[0]).get("period")).get("end"))
        if end is not None:
            return end
    return _int_or_none(invoice.get("period_end"))


def _invoice_problem(invoice: Mapping[str, Any], plan: Plan) -> tuple[str, str] | None:
    reason = invoice.get("billing_reason")
    if reason not in CREDITED_BILLING_REASONS:
        return "unsupported_billing_reason", f"billing_reason {reason!r} is not one of {CREDITED_BILLING_REASONS}"
    paid = invoice.get("amount_paid")
    if _int_or_none(paid) != plan.price_cents:
        return "amount_mismatch", f"amount_paid {paid!r} != plan {plan.id} price {plan.price_cents}"
    currency = invoice.get("currency")
    if not isinstance(currency, str) or currency.lower() != plan.currency:
        return "currency_mismatch", f"currency {currency!r} != plan {plan.id} currency {plan.currency!r}"
    return None


def _reject_invoice(deps: Deps, event: StripeEvent, invoice_id: str, sub_id: str | None, user_id: object,
                    reason: str, detail: str) -> Outcome:
    log.warning("plan invoice rejected: %s", detail,
                extra={"event_id": event.id, "invoice_id": invoice_id, "subscription_id": sub_id, "reason": reason})
    deps.store.record_event(event.id, {"type": event.type, "status": "processed", "outcome": "rejected",
                                       "reason": reason, "invoiceId": invoice_id, "subscriptionId": sub_id,
                                       "userId": _user_or_none(user_id)},
                            alert=invoice_rejected_alert(event, invoice_id, sub_id, user_id, reason, detail))
    return Outcome("rejected", None, _user_or_none(user_id), reason=reason)


def _not_a_plan_invoice(deps: Deps, event: StripeEvent, invoice_id: str) -> Outcome:
    # tokenbank bills nothing but plans; an invoice without a subscription is someone else's.
    deps.store.record_event(event.id, {"type": event.type, "status": "processed", "outcome": "not_a_plan_invoice",
                                       "invoiceId": invoice_id})
    log.info("invoice has no subscription: nothing to do", extra={"event_id": event.id, "invoice_id": invoice_id})
    return Outcome("ignored", reason="not_a_plan_invoice")


# -- invoice.payment_failed -----------------------------------------------------------
def invoice_payment_failed(deps: Deps, event: StripeEvent) -> Outcome:
    """Mark the user's subscription ``past_due`` (unless newer news is stored) and alert."""
    invoice = event.object
    invoice_id = _invoice_id(invoice)
    sub_id, metadata = invoice_subscription(invoice)
    if sub_id is None and not metadata:
        return _not_a_plan_invoice(deps, event, invoice_id)
    user_id = metadata.get("userId")
    problem = _user_problem(user_id)
    if problem:
        return _reject_invoice(deps, event, invoice_id, sub_id, user_id, *problem)
    plan = deps.catalog.plan(metadata.get("planId"))
    stored = _mapping(_mapping(deps.store.get_user(user_id)).get("subscription"))
    if sub_id is not None and stored.get("id") not in (None, sub_id):
        applied, outcome = False, "other_subscription"  # the user has moved on to another subscription
    else:
        # Keep what is stored (the store may replace the whole map), change only the status.
        fields = {k: stored[k] for k in MIRRORED_FIELDS if k in stored}
        fields.update(id=sub_id or stored.get("id"), status=PAST_DUE)
        if plan is not None:
            fields["plan"] = plan.id
        applied = deps.store.mirror_subscription(user_id, fields, event.created)
        outcome = PAST_DUE if applied else "stale"
    alert = payment_failed_alert(event, invoice, invoice_id, sub_id, user_id, plan.id if plan else None)
    deps.store.record_event(event.id, {"type": event.type, "status": "processed", "outcome": outcome,
                                       "userId": user_id, "invoiceId": invoice_id, "subscriptionId": sub_id},
                            alert=alert)
    log.warning("plan payment failed; subscription %s", outcome,
                extra={"event_id": event.id, "user_id": user_id, "invoice_id": invoice_id, "subscription_id": sub_id})
    return Outcome(PAST_DUE if applied else "skipped", None, user_id, reason=None if applied else outcome)


# -- the plan's Checkout Session ------------------------------------------------------
def plan_checkout_session(deps: Deps, event: StripeEvent) -> Outcome:
    """A plan's checkout.session.* event: free or fill the purchase-gate place; no tokens here.

    Paid: the place becomes a purchase in the velocity window (as a package's would).
    Expired: the place is released. The allowance comes with the first ``invoice.paid``.
    """
    session = event.object
    session_id = session.get("id")
    if not is_valid_doc_id(session_id):
        raise MalformedEvent("checkout session id is not a valid document id")
    try:
        user_id = resolve_user_id(CheckoutSession.from_stripe(session))
    except PurchaseRejected as rejection:
        log.warning("plan checkout rejected: %s", rejection, extra={"event_id": event.id, "session_id": session_id})
        claimed = _mapping(session.get("metadata")).get("userId")
        deps.store.record_event(event.id, {"type": event.type, "status": "processed", "outcome": "rejected",
                                           "reason": rejection.reason, "sessionId": session_id},
                                alert=subscription_rejected_alert(event, session.get("subscription"), claimed,
                                                                  rejection.reason, rejection.detail))
        return Outcome("rejected", session_id, None, reason=rejection.reason)
    paid = event.type in (CHECKOUT_COMPLETED, CHECKOUT_ASYNC_SUCCEEDED) and session.get("payment_status") == "paid"
    if paid:
        record_purchase(deps.redis, user_id, session_id, int(deps.clock() * 1000))
        outcome = "plan_checkout_paid"
    elif event.type == CHECKOUT_EXPIRED:
        purchase_gate.release(deps.redis, user_id, session_id)
        outcome = "plan_checkout_expired"
    else:
        outcome = "plan_checkout_" + event.type.rsplit(".", 1)[-1]
    deps.store.record_event(event.id, {"type": event.type, "status": "processed", "outcome": outcome,
                                       "sessionId": session_id, "userId": user_id,
                                       "subscriptionId": _ref_id(session.get("subscription"))})
    log.info("plan checkout: %s", outcome, extra={"event_id": event.id, "session_id": session_id, "user_id": user_id})
    return Outcome(outcome, session_id, user_id)


HANDLERS = {
    SUBSCRIPTION_CREATED: subscription_changed,
    SUBSCRIPTION_UPDATED: subscription_changed,
    SUBSCRIPTION_DELETED: subscription_changed,
    INVOICE_PAID: invoice_paid,
    INVOICE_PAYMENT_FAILED: invoice_payment_failed,
}


# -- small readers of untrusted data --------------------------------------------------
def _user_problem(user_id: object) -> tuple[str, str] | None:
    if user_id in (None, ""):
        return "missing_user", "no metadata.userId"
    if not is_valid_doc_id(user_id):
        return "invalid_user", "metadata.userId is not a valid document id"
    return None


def _invoice_id(invoice: Mapping[str, Any]) -> str:
    invoice_id = invoice.get("id")
    if not is_valid_doc_id(invoice_id) or not is_valid_doc_id(allowance_entry_id(invoice_id)):
        raise MalformedEvent("invoice id is not a valid document id")
    return invoice_id


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _ref_id(value: object) -> str | None:
    """An id field that may be expanded into its object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value[:200] if isinstance(value, str) else None if value is None else repr(value)[:200]


def _user_or_none(user_id: object) -> str | None:
    return user_id if is_valid_doc_id(user_id) else None
