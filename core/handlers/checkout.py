"""Checkout Session events, and fulfilment from what Stripe says (success page, reconciliation).

A paid package session is validated against the catalog and credited once
(``credit_payment``); an unpaid completion is ``pending``; async success credits, async
failure is ``failed``, expiry is ``expired`` and frees the purchase-gate place. A plan's
session only moves the gate: its tokens come with ``invoice.paid`` (core/handlers/plans.py).
"""
from __future__ import annotations

import logging

from core import alerts, metrics
from core.domain.checkout import CheckoutSession, claimed_user_id, validate_paid_session
from core.domain.errors import MalformedEvent, PurchaseRejected
from core.domain.ledger import PURCHASE
from core.domain.payment import EXPIRED, FAILED, PACKAGE, PENDING, REJECTED, Payment
from core.domain.records import REJECTED as REJECTED_EVENT, EventRef
from core.domain.stripe_events import (
    CHECKOUT_ASYNC_FAILED, CHECKOUT_ASYNC_SUCCEEDED, CHECKOUT_COMPLETED, CHECKOUT_EXPIRED, StripeEvent,
)
from core.handlers.payments import change_status, credit_payment
from core.handlers.plans import is_plan_session, plan_checkout_session
from core.handlers.registry import handles
from core.outcome import Outcome

log = logging.getLogger("tokenbank.fulfilment")
_STATUS_BY_EVENT = {CHECKOUT_COMPLETED: PENDING, CHECKOUT_ASYNC_SUCCEEDED: PENDING,
                    CHECKOUT_ASYNC_FAILED: FAILED, CHECKOUT_EXPIRED: EXPIRED}


@handles(CHECKOUT_COMPLETED, CHECKOUT_ASYNC_SUCCEEDED, CHECKOUT_ASYNC_FAILED, CHECKOUT_EXPIRED)
def checkout_session_event(deps, event: StripeEvent) -> Outcome:
    if is_plan_session(event.object):
        return plan_checkout_session(deps, event)
    session = CheckoutSession.from_stripe(event.object)
    ref = EventRef(event.id, event.type, "webhook", event.created or None)
    paid = session.payment_status in ("paid", "no_payment_required")  # validation rejects a free session
    if event.type in (CHECKOUT_COMPLETED, CHECKOUT_ASYNC_SUCCEEDED) and paid:
        return fulfil_checkout_session(deps, session, ref)
    return _change_status(deps, session, ref, _STATUS_BY_EVENT[event.type])


def _change_status(deps, session: CheckoutSession, ref: EventRef, status: str) -> Outcome:
    if not session.has_valid_id:
        raise MalformedEvent("checkout session id is not a valid document id")
    user_id = claimed_user_id(session)
    if status == EXPIRED and user_id:
        deps.gate.release(user_id, session.id)  # an expired checkout frees its place
    package = deps.catalog.get(session.metadata.get("packageId"))
    reason = f"payment_status {session.payment_status}" if status == PENDING else None
    applied = change_status(deps, Payment(session.id, PACKAGE, user_id, item_id=package.id if package else None,
                                          reason=reason), status, ref)
    log.info("purchase %s", status if applied else f"{status} skipped",
             extra={"event_id": ref.event_id, "session_id": session.id, "user_id": user_id})
    return Outcome(status if applied else "skipped", session.id, user_id)


def fulfil_checkout_session(deps, session: CheckoutSession, ref: EventRef) -> Outcome:
    """Validate a paid session against the catalog and credit it exactly once."""
    context = {"event_id": ref.event_id, "session_id": session.id, "source": ref.source}
    try:
        purchase = validate_paid_session(session, deps.catalog)
    except PurchaseRejected as rejection:
        return _reject(deps, session, ref, rejection, context)
    context["user_id"] = purchase.user_id
    settings = deps.settings
    result = credit_payment(deps, Payment(
        purchase.session_id, PACKAGE, purchase.user_id, item_id=purchase.package.id, tokens=purchase.package.tokens,
        amount_paid=purchase.amount_paid, currency=purchase.currency, payment_intent=purchase.payment_intent,
    ), PURCHASE, ref, {"amountPaid": purchase.amount_paid, "currency": purchase.currency})
    # Recorded on every delivery, not only the crediting one: a worker that died between the
    # commit and this line leaves it to the redelivery. The set keeps one member per session.
    velocity = deps.gate.record_purchase(purchase.user_id, purchase.session_id, int(deps.clock() * 1000))
    if velocity.newly_recorded and velocity.over(settings.purchases_per_hour, settings.purchases_per_day):
        metrics.VELOCITY_ALERTS.inc()
        deps.store.add_alert(alerts.velocity_exceeded(purchase.session_id, purchase.user_id, velocity.last_hour,
                                                      velocity.last_day, settings.purchases_per_hour,
                                                      settings.purchases_per_day))
        log.warning("purchase velocity over the limit; credited because it was paid",
                    extra={**context, "last_hour": velocity.last_hour, "last_day": velocity.last_day})
    if not result.credited:
        log.info("purchase already fulfilled", extra=context)
        return Outcome("already_fulfilled", purchase.session_id, purchase.user_id)
    metrics.CREDITS.labels(ref.source).inc()
    metrics.CREDITED_TOKENS.inc(purchase.package.tokens)
    if ref.created:
        metrics.WEBHOOK_TO_CREDIT.observe(max(0.0, deps.clock() - ref.created))
    log.info("purchase credited", extra={**context, "tokens": purchase.package.tokens,
                                         "balance_after": result.balance_after, "attempts": result.attempts,
                                         "reversed_on_credit": result.reversed_tokens})
    return Outcome("credited", purchase.session_id, purchase.user_id, result.balance_after)


def _reject(deps, session: CheckoutSession, ref: EventRef, rejection: PurchaseRejected, context: dict) -> Outcome:
    user_id = claimed_user_id(session)
    metrics.REJECTIONS.labels(rejection.reason).inc()
    log.warning("purchase rejected: %s", rejection, extra={**context, "user_id": user_id, "reason": rejection.reason})
    if not session.has_valid_id:
        # The session id cannot name a document: key the alert by the event instead.
        alert = alerts.invalid_session_rejected(session.id, user_id, rejection.reason, ref.event_id)
        record = ref.record(REJECTED_EVENT, "rejected", reason=rejection.reason)

        def work(tx):
            tx.put(alert)
            if record is not None:
                tx.put(record)
        deps.uow.run(work)
        return Outcome("rejected", None, user_id, reason=rejection.reason)
    package = deps.catalog.get(session.metadata.get("packageId"))
    change_status(deps, Payment(session.id, PACKAGE, user_id, item_id=package.id if package else None,
                                reason=rejection.reason, detail=rejection.detail), REJECTED, ref,
                  alert=alerts.purchase_rejected(session.id, user_id, rejection.reason, rejection.detail,
                                                 ref.event_id))
    return Outcome("rejected", session.id, user_id, reason=rejection.reason)


def fulfil_session_by_id(deps, session_id: str, source: str) -> Outcome:
    """Ask Stripe for the session and apply what it says: Stripe's recommended second path.

    The success page and reconciliation call this; a webhook that never arrived still ends
    in exactly one credit, because the credit is keyed on the session like the webhook's.
    """
    obj = deps.payments.checkout_session(session_id)
    session = CheckoutSession.from_stripe(obj)
    if session.id != session_id:
        raise MalformedEvent("Stripe returned a different session")
    ref = EventRef(None, "checkout.session.retrieved", source)
    if is_plan_session(obj):
        return Outcome("plan_checkout", session.id, claimed_user_id(session))  # credited by invoice.paid
    if session.payment_status in ("paid", "no_payment_required") and session.status == "complete":
        return fulfil_checkout_session(deps, session, ref)
    if session.status == "complete":
        return _change_status(deps, session, ref, PENDING)
    if session.status == "expired":
        return _change_status(deps, session, ref, EXPIRED)
    log.info("session still open; nothing to do", extra={"session_id": session_id, "source": source})
    return Outcome("open", session_id, claimed_user_id(session))
