"""Fulfilment: from a verified Stripe event to exactly one credit.

``fulfil_checkout_session`` is the one idempotent function that credits a paid Checkout
Session. The webhook worker, the success page and reconciliation all call it; it is keyed
on the session id, so any number of calls for one session credit it once.
"""
from __future__ import annotations

import logging
from core import alerts, metrics, purchase_gate, subscriptions
from core.checkout import CheckoutSession, claimed_user_id, validate_paid_session
from core.deps import Deps
from core.errors import MalformedEvent, PurchaseRejected
from core.outcome import Outcome
from core.store import EXPIRED, FAILED, PENDING, REJECTED, EventRef, CreditRequest, StatusChange
from core.reversals import handle_dispute, handle_refund
from core.stripe_events import (
    CHARGE_REFUNDED, CHECKOUT_ASYNC_FAILED, CHECKOUT_ASYNC_SUCCEEDED, CHECKOUT_COMPLETED, CHECKOUT_EXPIRED,
    HANDLED_TYPES, REVERSAL_TYPES, parse_event,
)
from core.user_lock import user_lock
from core.velocity import record_purchase

log = logging.getLogger("tokenbank.fulfilment")


def process_stripe_event(deps: Deps, payload: str) -> Outcome:
    """Handle one verified Stripe event body (the worker's entry point)."""
    event = parse_event(payload)
    ref = EventRef(event.id, event.type, "webhook", event.created or None)
    context = {"event_id": event.id, "event_type": event.type}
    if event.type not in HANDLED_TYPES:
        deps.store.record_event(event.id, {"type": event.type, "status": "ignored"})
        log.info("event ignored", extra=context)
        return Outcome("ignored")
    if event.type in REVERSAL_TYPES:
        result = handle_refund(deps, event) if event.type == CHARGE_REFUNDED else handle_dispute(deps, event)
        deps.store.record_event(event.id, {"type": event.type, "status": "processed", "outcome": result["status"],
                                           "userId": result.get("user_id")})
        return Outcome(result["status"], result.get("session_id"), result.get("user_id"))
    if event.type in subscriptions.HANDLERS:
        return subscriptions.HANDLERS[event.type](deps, event)
    if subscriptions.is_plan_session(event.object):  # a plan's checkout: the tokens come with invoice.paid
        return subscriptions.plan_checkout_session(deps, event)
    session = CheckoutSession.from_stripe(event.object)
    context.update(session_id=session.id, user_id=claimed_user_id(session))
    if event.type in (CHECKOUT_COMPLETED, CHECKOUT_ASYNC_SUCCEEDED) and session.payment_status == "paid":
        return fulfil_checkout_session(deps, session, ref)
    if event.type == CHECKOUT_COMPLETED and session.payment_status == "no_payment_required":
        return fulfil_checkout_session(deps, session, ref)  # validation rejects a free session
    status = {CHECKOUT_COMPLETED: PENDING, CHECKOUT_ASYNC_SUCCEEDED: PENDING,
              CHECKOUT_ASYNC_FAILED: FAILED, CHECKOUT_EXPIRED: EXPIRED}[event.type]
    return _change_status(deps, session, ref, status, context)


def _change_status(deps: Deps, session: CheckoutSession, ref: EventRef, status: str, context: dict) -> Outcome:
    if not session.has_valid_id:
        raise MalformedEvent("checkout session id is not a valid document id")
    user_id = claimed_user_id(session)
    if status == EXPIRED and user_id:
        purchase_gate.release(deps.redis, user_id, session.id)  # an expired checkout frees its place
    package = deps.catalog.get(session.metadata.get("packageId"))
    applied = deps.store.change_purchase_status(StatusChange(
        session.id, status, user_id, package.id if package else None, ref,
        reason=f"payment_status {session.payment_status}" if status == PENDING else None))
    log.info("purchase %s", status if applied else f"{status} skipped", extra=context)
    return Outcome(status if applied else "skipped", session.id, user_id)


def fulfil_checkout_session(deps: Deps, session: CheckoutSession, ref: EventRef) -> Outcome:
    """Validate a paid session against the catalog and credit it exactly once."""
    context = {"event_id": ref.event_id, "session_id": session.id, "source": ref.source}
    try:
        purchase = validate_paid_session(session, deps.catalog)
    except PurchaseRejected as rejection:
        return _reject(deps, session, ref, rejection, context)
    context["user_id"] = purchase.user_id
    settings = deps.settings
    request = CreditRequest(purchase.session_id, purchase.user_id, purchase.package.id, purchase.package.tokens,
                            purchase.amount_paid, purchase.currency, purchase.payment_intent, ref)
    with user_lock(deps.redis, purchase.user_id, settings.user_lock_ttl_ms, settings.user_lock_wait_seconds):
        result = deps.store.credit_purchase(request)
    # Recorded on every delivery, not only the crediting one: a worker that died between the
    # commit and this line leaves it to the redelivery. The set keeps one member per session.
    velocity = record_purchase(deps.redis, purchase.user_id, purchase.session_id, int(deps.clock() * 1000))
    if velocity.newly_recorded and velocity.over(settings.purchases_per_hour, settings.purchases_per_day):
        metrics.VELOCITY_ALERTS.inc()
        deps.store.add_alert(alerts.velocity_exceeded(purchase.session_id, purchase.user_id, velocity.last_hour,
                                                      velocity.last_day, settings.purchases_per_hour,
                                                      settings.purchases_per_day))
        log.warning("purchase velocity over the limit; credited because it was paid",
                    extra={**context, "last_hour": velocity.last_hour, "last_day": velocity.last_day})
    if result.credited:
        metrics.CREDITS.labels(ref.source).inc()
        metrics.CREDITED_TOKENS.inc(purchase.package.tokens)
        if ref.created:
            metrics.WEBHOOK_TO_CREDIT.observe(max(0.0, deps.clock() - ref.created))
        log.info("purchase credited", extra={**context, "tokens": purchase.package.tokens,
                                             "balance_after": result.balance_after, "attempts": result.attempts})
        return Outcome("credited", purchase.session_id, purchase.user_id, result.balance_after)
    log.info("purchase already fulfilled", extra=context)
    return Outcome("already_fulfilled", purchase.session_id, purchase.user_id)


def _reject(deps: Deps, session: CheckoutSession, ref: EventRef, rejection: PurchaseRejected, context: dict) -> Outcome:
    user_id = claimed_user_id(session)
    metrics.REJECTIONS.labels(rejection.reason).inc()
    log.warning("purchase rejected: %s", rejection, extra={**context, "user_id": user_id, "reason": rejection.reason})
    if not session.has_valid_id:
        # The session id cannot name a document: key the alert by the event instead.
        deps.store.add_alert(alerts.invalid_session_rejected(session.id, user_id, rejection.reason, ref.event_id))
        if ref.event_id:
            deps.store.record_event(ref.event_id, {"type": ref.event_type, "status": "processed",
                                                   "outcome": "rejected", "reason": rejection.reason})
        return Outcome("rejected", None, user_id, reason=rejection.reason)
    alert = alerts.purchase_rejected(session.id, user_id, rejection.reason, rejection.detail, ref.event_id)
    package = deps.catalog.get(session.metadata.get("packageId"))
    deps.store.change_purchase_status(
        StatusChange(session.id, REJECTED, user_id, package.id if package else None, ref,
                     reason=rejection.reason, detail=rejection.detail),
        alert=alert)
    return Outcome("rejected", session.id, user_id, reason=rejection.reason)




def fulfil_session_by_id(deps: Deps, session_id: str, source: str) -> Outcome:
    """Ask Stripe for the session and apply what it says: Stripe's recommended second path.

    The success page and reconciliation call this; a webhook that never arrived still ends
    in exactly one credit, because the credit is keyed on the session like the webhook's.
    """
    obj = deps.stripe.v1.checkout.sessions.retrieve(session_id).to_dict()
    session = CheckoutSession.from_stripe(obj)
    if session.id != session_id:
        raise MalformedEvent("Stripe returned a different session")
    ref = EventRef(None, "checkout.session.retrieved", source)
    context = {"session_id": session_id, "source": source, "user_id": claimed_user_id(session)}
    if subscriptions.is_plan_session(obj):
        return Outcome("plan_checkout", session.id, claimed_user_id(session))  # credited by invoice.paid
    if session.payment_status in ("paid", "no_payment_required") and session.status == "complete":
        return fulfil_checkout_session(deps, session, ref)
    if session.status == "complete":
        return _change_status(deps, session, ref, PENDING, context)
    if session.status == "expired":
        return _change_status(deps, session, ref, EXPIRED, context)
    log.info("session still open; nothing to do", extra=context)
    return Outcome("open", session_id, claimed_user_id(session))
