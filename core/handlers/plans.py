"""Token plans: subscriptions mirrored onto the user, and one allowance per paid invoice.

- ``customer.subscription.*`` are mirrored to ``users/{uid}.subscription`` under the
  domain's mirror rule (core/domain/subscription.py): news of another subscription never
  hides the current one, an older event never overwrites a newer one.
- ``invoice.paid`` of a plan is a payment like a package's: validated against the
  catalog, credited once (``subscription_allowance``), recorded with its PaymentIntent so
  refunds and disputes act on it exactly as on a package.
- ``invoice.payment_failed`` marks that subscription ``past_due`` and raises an alert.
- A plan's Checkout Session only fills or frees its purchase-gate place.
Anything not attributable to a valid user and plan is ``rejected`` with an alert, never retried.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from core.domain.account import Account
from core.domain.checkout import CheckoutSession, resolve_user_id
from core.domain.errors import MalformedEvent, PurchaseRejected
from core.domain.ids import is_valid_doc_id
from core.domain.ledger import ALLOWANCE, payment_entry_id
from core.domain.lots import PLAN_LOT, LotSpec
from core.domain.payment import PLAN_INVOICE, Payment
from core.domain.records import PROCESSED, REJECTED, Alert, EventRef
from core.domain.stripe_events import (
    CHECKOUT_ASYNC_SUCCEEDED, CHECKOUT_COMPLETED, CHECKOUT_EXPIRED, INVOICE_PAID, INVOICE_PAYMENT_FAILED,
    SUBSCRIPTION_CREATED, SUBSCRIPTION_DELETED, SUBSCRIPTION_UPDATED, StripeEvent,
)
from core.domain.stripe_objects import (
    current_period_end, int_or_none, invoice_payment_intent, invoice_period_end, invoice_subscription, mapping,
    ref_id, text, user_problem,
)
from core.domain.subscription import CANCELED, PAST_DUE
from core.handlers.payments import credit_payment
from core.handlers.registry import handles
from core.outcome import Outcome

log = logging.getLogger("tokenbank.subscriptions")
CREDITED_BILLING_REASONS = ("subscription_create", "subscription_cycle")


def is_plan_session(obj: Mapping[str, Any]) -> bool:
    metadata = obj.get("metadata")
    return obj.get("mode") == "subscription" and isinstance(metadata, Mapping) and "planId" in metadata


def _user_or_none(user_id: object) -> str | None:
    return user_id if is_valid_doc_id(user_id) else None


def _finish(deps, event: StripeEvent, outcome: str, fields: dict, alert: Alert | None = None, mirror=None,
            ref: EventRef | None = None, status: str = PROCESSED):
    """One transaction: the optional subscription mirror, the alert and the event's record."""
    def work(tx):
        applied = None
        if mirror is not None:
            user_id, state = mirror
            account, applied = (tx.get(Account, user_id) or Account(user_id)).mirror_subscription(state)
            if applied:
                tx.put(account)
        if alert is not None:
            tx.put(alert)
        final = outcome if applied is not False else "stale"
        record = (ref or EventRef(event.id, event.type)).record(status, final, **fields)
        if record is not None:
            tx.put(record)
        return applied
    return deps.uow.run(work)


def _reject(deps, event: StripeEvent, kind: str, object_id: str | None, sub_id: object, user_id: object,
            reason: str, detail: str, ref: EventRef | None = None) -> Outcome:
    context = {"event_id": event.id, "reason": reason}
    if kind == "invoice":
        log.warning("plan invoice rejected: %s", detail, extra=context)
    elif kind == "checkout":
        log.warning("plan checkout rejected: %s", detail, extra=context)
    else:
        log.warning("subscription event rejected: %s", detail, extra=context)
    alert = Alert(f"subscription_invoice_rejected_{object_id}" if kind == "invoice" else f"subscription_rejected_{event.id}",
                  "subscription_invoice_rejected" if kind == "invoice" else "subscription_rejected",
                  _user_or_none(user_id),
                  {"invoiceId": object_id if kind == "invoice" else None, "subscriptionId": text(sub_id),
                   "eventType": event.type, "reason": reason, "detail": detail, "stripeEventId": event.id,
                   "claimedUserId": text(user_id)})
    _finish(deps, event, "rejected", {"reason": reason, "subscriptionId": text(sub_id),
                                      "invoiceId": object_id if kind == "invoice" else None,
                                      "userId": _user_or_none(user_id)}, alert, ref=ref, status=REJECTED)
    return Outcome("rejected", None, _user_or_none(user_id), reason=reason)


@handles(SUBSCRIPTION_CREATED, SUBSCRIPTION_UPDATED, SUBSCRIPTION_DELETED)
def subscription_changed(deps, event: StripeEvent) -> Outcome:
    sub = event.object
    sub_id = ref_id(sub.get("id"))
    if sub_id is None:
        raise MalformedEvent("subscription has no id")
    user_id = mapping(sub.get("metadata")).get("userId")
    problem = user_problem(user_id)
    if problem:
        return _reject(deps, event, "subscription", None, sub_id, user_id, *problem)
    plan = deps.catalog.plan(mapping(sub.get("metadata")).get("planId"))
    status = CANCELED if event.type == SUBSCRIPTION_DELETED else text(sub.get("status"))
    state = {"id": sub_id, "status": status, "plan": plan.id if plan else None,
             "currentPeriodEnd": current_period_end(sub), "cancelAtPeriodEnd": sub.get("cancel_at_period_end") is True,
             "eventCreated": event.created}
    if int_or_none(sub.get("created")) is not None:
        state["created"] = sub["created"]  # the subscription's own creation: which one is current
    applied = _finish(deps, event, "mirrored", {"userId": user_id, "subscriptionId": sub_id},
                      mirror=(user_id, state))
    log.info("subscription %s", "mirrored" if applied else "not mirrored (stale or another subscription)",
             extra={"event_id": event.id, "user_id": user_id, "subscription_id": sub_id, "subscription_status": status})
    return Outcome("mirrored" if applied else "skipped", None, user_id, reason=None if applied else "stale_event")


def _invoice_parts(event: StripeEvent):
    return _parts_of(event.object)


def _parts_of(invoice: Mapping[str, Any]):
    invoice_id = invoice.get("id")
    if not is_valid_doc_id(invoice_id) or not is_valid_doc_id(payment_entry_id(ALLOWANCE, invoice_id)):
        raise MalformedEvent("invoice id is not a valid document id")
    sub_id, metadata = invoice_subscription(invoice)
    return invoice, invoice_id, sub_id, metadata


@handles(INVOICE_PAID)
def invoice_paid(deps, event: StripeEvent) -> Outcome:
    return _credit_invoice(deps, event, EventRef(event.id, event.type, "webhook", event.created or None))


def fulfil_invoice_by_id(deps, invoice_id: str, source: str) -> Outcome:
    """Ask Stripe for a paid invoice and credit it as ``invoice.paid`` would (reconciliation's
    path for an ``invoice.paid`` that never arrived); idempotent like the webhook."""
    invoice = deps.payments.invoice(invoice_id)
    if invoice is None or invoice.get("id") != invoice_id:
        raise MalformedEvent(f"Stripe has no invoice {invoice_id}")
    if invoice.get("status") != "paid":
        return Outcome("not_paid", invoice_id, reason=f"invoice status {invoice.get('status')!r}")
    event = StripeEvent(f"reconcile_{invoice_id}", INVOICE_PAID, 0, False, invoice)
    return _credit_invoice(deps, event, EventRef(None, "invoice.retrieved", source))


def _credit_invoice(deps, event: StripeEvent, ref: EventRef) -> Outcome:
    invoice, invoice_id, sub_id, metadata = _invoice_parts(event)
    if sub_id is None and not metadata:  # tokenbank bills nothing but plans: someone else's invoice
        _finish(deps, event, "not_a_plan_invoice", {"invoiceId": invoice_id}, ref=ref)
        return Outcome("ignored", reason="not_a_plan_invoice")
    user_id, plan_id = metadata.get("userId"), metadata.get("planId")
    problem = user_problem(user_id)
    plan = deps.catalog.plan(plan_id)
    if not problem and plan is None:
        problem = ("unknown_plan", f"metadata.planId {plan_id!r} is not in the catalog")
    if not problem:
        problem = _invoice_problem(invoice, plan)
    if problem:
        return _reject(deps, event, "invoice", invoice_id, sub_id, user_id, *problem, ref=ref)
    pi = invoice_payment_intent(invoice) or deps.payments.payment_intent_of_invoice(invoice_id)
    plan_refs = {"subscriptionId": sub_id, "billingReason": invoice.get("billing_reason"),
                 "periodEnd": invoice_period_end(invoice)}
    result = credit_payment(deps, Payment(
        invoice_id, PLAN_INVOICE, user_id, item_id=plan.id, tokens=plan.tokens_per_period,
        amount_paid=invoice["amount_paid"], currency=plan.currency, payment_intent=pi, info=plan_refs),
        ALLOWANCE, ref, {"subscriptionId": sub_id}, entry_refs=plan_refs, lot=plan_lot(plan, plan_refs["periodEnd"]))
    log.info("plan allowance %s", "credited" if result.credited else "already credited",
             extra={"event_id": event.id, "user_id": user_id, "invoice_id": invoice_id, "plan_id": plan.id,
                    "tokens": plan.tokens_per_period, "balance_after": result.balance_after})
    if result.credited:
        return Outcome("credited", None, user_id, result.balance_after)
    return Outcome("already_fulfilled", None, user_id)


def plan_lot(plan, period_end: int | None) -> LotSpec:
    """A period's allowance: with a rollover cap it expires at the period end, above the cap."""
    expires = period_end if plan.rollover_cap is not None else None
    return LotSpec(PLAN_LOT, expires_at=expires, plan_id=plan.id, rollover_cap=plan.rollover_cap)


def _invoice_problem(invoice: Mapping[str, Any], plan) -> tuple[str, str] | None:
    reason = invoice.get("billing_reason")
    if reason not in CREDITED_BILLING_REASONS:
        return "unsupported_billing_reason", f"billing_reason {reason!r} is not one of {CREDITED_BILLING_REASONS}"
    paid = invoice.get("amount_paid")
    if int_or_none(paid) != plan.price_cents:
        return "amount_mismatch", f"amount_paid {paid!r} != plan {plan.id} price {plan.price_cents}"
    currency = invoice.get("currency")
    if not isinstance(currency, str) or currency.lower() != plan.currency:
        return "currency_mismatch", f"currency {currency!r} != plan {plan.id} currency {plan.currency!r}"
    return None


@handles(INVOICE_PAYMENT_FAILED)
def invoice_payment_failed(deps, event: StripeEvent) -> Outcome:
    invoice, invoice_id, sub_id, metadata = _invoice_parts(event)
    if sub_id is None and not metadata:
        _finish(deps, event, "not_a_plan_invoice", {"invoiceId": invoice_id})
        return Outcome("ignored", reason="not_a_plan_invoice")
    user_id = metadata.get("userId")
    problem = user_problem(user_id)
    if problem:
        return _reject(deps, event, "invoice", invoice_id, sub_id, user_id, *problem)
    plan = deps.catalog.plan(metadata.get("planId"))
    alert = Alert(f"subscription_payment_failed_{invoice_id}", "subscription_payment_failed", user_id,
                  {"invoiceId": invoice_id, "subscriptionId": sub_id, "planId": plan.id if plan else None,
                   "amountDue": int_or_none(invoice.get("amount_due")), "currency": text(invoice.get("currency")),
                   "attemptCount": int_or_none(invoice.get("attempt_count")),
                   "nextPaymentAttempt": int_or_none(invoice.get("next_payment_attempt")), "stripeEventId": event.id})

    def mirror_past_due(tx):
        account = tx.get(Account, user_id) or Account(user_id)
        stored = dict(account.subscription or {})
        if sub_id is not None and stored.get("id") not in (None, sub_id):
            outcome, applied = "other_subscription", False  # the user has moved on to another subscription
        else:
            state = {**stored, "id": sub_id or stored.get("id"), "status": PAST_DUE, "eventCreated": event.created}
            if plan is not None:
                state["plan"] = plan.id
            account, applied = account.mirror_subscription(state)
            outcome = PAST_DUE if applied else "stale"
            if applied:
                tx.put(account)
        tx.put(alert)
        tx.put(EventRef(event.id, event.type).record(PROCESSED, outcome, userId=user_id, invoiceId=invoice_id,
                                                     subscriptionId=sub_id))
        return applied, outcome

    applied, outcome = deps.uow.run(mirror_past_due)
    log.warning("plan payment failed; subscription %s", outcome,
                extra={"event_id": event.id, "user_id": user_id, "invoice_id": invoice_id, "subscription_id": sub_id})
    return Outcome(PAST_DUE if applied else "skipped", None, user_id, reason=None if applied else outcome)


def plan_checkout_session(deps, event: StripeEvent) -> Outcome:
    """A plan's checkout.session.* event: fill (paid) or free (expired) its gate place; no tokens here."""
    session = event.object
    session_id = session.get("id")
    if not is_valid_doc_id(session_id):
        raise MalformedEvent("checkout session id is not a valid document id")
    try:
        user_id = resolve_user_id(CheckoutSession.from_stripe(session))
    except PurchaseRejected as rejection:
        claimed = mapping(session.get("metadata")).get("userId")
        return _reject(deps, event, "checkout", None, session.get("subscription"), claimed,
                       rejection.reason, rejection.detail)
    paid = event.type in (CHECKOUT_COMPLETED, CHECKOUT_ASYNC_SUCCEEDED) and session.get("payment_status") == "paid"
    if paid:
        deps.gate.record_purchase(user_id, session_id, int(deps.clock() * 1000))
        outcome = "plan_checkout_paid"
    elif event.type == CHECKOUT_EXPIRED:
        deps.gate.release(user_id, session_id)
        outcome = "plan_checkout_expired"
    else:
        outcome = "plan_checkout_" + event.type.rsplit(".", 1)[-1]
    _finish(deps, event, outcome, {"sessionId": session_id, "userId": user_id,
                                   "subscriptionId": ref_id(session.get("subscription"))})
    log.info("plan checkout: %s", outcome, extra={"event_id": event.id, "session_id": session_id, "user_id": user_id})
    return Outcome(outcome, session_id, user_id)
