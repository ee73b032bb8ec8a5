"""A signed-in user's token plan: what their subscription is, cancelling it, a plan checkout's progress.

What a user sees is the mirror (``users/{uid}.subscription``), which only Stripe's
``customer.subscription.*`` and ``invoice.payment_failed`` webhooks write
(core/handlers/plans.py). Cancelling acts on that mirrored subscription only — never on an
id the client sends — through the Payments port, and writes nothing itself: the mirror
follows Stripe's ``customer.subscription.updated`` (or ``deleted``) like any other change.

- ``cancel_subscription(at_period_end=True)`` sets Stripe's ``cancel_at_period_end``: the plan
  stays active (no further charge) until ``currentPeriodEnd``; tokens already credited stay.
  ``at_period_end=False`` cancels at once (no refund; credited tokens stay).
- No live subscription: ``NoSubscription`` (404); already set to end: ``AlreadyCanceling``
  (409); Stripe refuses or cannot be reached: ``CancelRefused`` (502), nothing changed.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from core.deps import Deps
from core.domain.ledger import ALLOWANCE
from core.domain.stripe_objects import current_period_end, int_or_none
from core.domain.subscription import CANCELED, is_live

log = logging.getLogger("tokenbank.plans")
FIRST_INVOICE = "subscription_create"  # billing_reason of a subscription's first invoice
RECENT_ENTRIES = 20  # a plan checkout's first allowance is among the user's newest entries


class NoSubscription(Exception):
    """The user has no live subscription to act on (404)."""


class AlreadyCanceling(Exception):
    """The subscription is already set to end at its period end (409)."""

    def __init__(self, state: dict):
        super().__init__("the plan is already set to end")
        self.state = state


class CancelRefused(Exception):
    """Stripe refused the cancellation or could not be reached; nothing changed (502)."""


def describe(deps: Deps, state: Mapping[str, Any] | None) -> dict | None:
    """A subscription as the page shows it: the mirrored state plus the plan's catalog terms."""
    if not state or not state.get("id"):
        return None
    plan = deps.catalog.plan(state.get("plan"))
    return {
        "id": state.get("id"),
        "status": state.get("status"),
        "live": is_live(state),
        "plan": plan.id if plan else None,
        "planName": plan.name if plan else None,
        "tokensPerPeriod": plan.tokens_per_period if plan else None,
        "priceCents": plan.price_cents if plan else None,
        "currency": plan.currency if plan else None,
        "interval": plan.interval if plan else None,
        "currentPeriodEnd": int_or_none(state.get("currentPeriodEnd")),
        "cancelAtPeriodEnd": state.get("cancelAtPeriodEnd") is True,
    }


def _mirrored(deps: Deps, user_id: str) -> Mapping[str, Any] | None:
    return (deps.store.get_user(user_id) or {}).get("subscription")


def subscription_state(deps: Deps, user_id: str) -> dict:
    """``{"subscription": ...}``: the user's mirrored subscription (ended ones too, ``live`` false), or None."""
    return {"subscription": describe(deps, _mirrored(deps, user_id))}


def cancel_subscription(deps: Deps, user_id: str, at_period_end: bool = True) -> dict:
    """Cancel the user's own mirrored subscription at Stripe; answers its state after Stripe's answer."""
    stored = _mirrored(deps, user_id)
    sub_id = stored.get("id") if is_live(stored) else None
    if not isinstance(sub_id, str) or not sub_id:
        raise NoSubscription("You have no active plan to cancel.")
    if at_period_end and stored.get("cancelAtPeriodEnd") is True:
        raise AlreadyCanceling(describe(deps, stored))
    context = {"user_id": user_id, "subscription_id": sub_id, "at_period_end": at_period_end}
    try:
        answer = deps.payments.cancel_subscription(sub_id, at_period_end)
    except Exception as exc:  # the adapter's SDK errors: services never import the SDK
        log.error("stripe refused to cancel the subscription: %s", type(exc).__name__, extra=context)
        raise CancelRefused(str(exc)) from exc
    if answer is None or answer.get("id") != sub_id:
        log.warning("stripe does not know the mirrored subscription", extra=context)
        raise NoSubscription("You have no active plan to cancel.")
    status = answer.get("status")
    if not isinstance(status, str) or not status:
        status = stored.get("status") if at_period_end else CANCELED
    after = {**stored, "status": status, "cancelAtPeriodEnd": answer.get("cancel_at_period_end") is True,
             "currentPeriodEnd": current_period_end(answer) or stored.get("currentPeriodEnd")}
    log.info("subscription cancel requested at stripe", extra={**context, "subscription_status": status})
    return {"subscription": describe(deps, after)}


def plan_checkout(deps: Deps, user_id: str, session_id: str) -> dict | None:
    """How this user's own plan checkout is going (the success page asks), or None if the session
    is not a plan checkout this user started.

    ``credited`` once a first-invoice allowance (``billing_reason`` subscription_create) was
    credited to the user after the checkout was started; the plan's tokens come with
    ``invoice.paid``, never with the session itself.
    """
    record = deps.store.get_checkout(session_id)
    item = str((record or {}).get("item") or "")
    if record is None or record.get("userId") != user_id or not item.startswith("plan:"):
        return None
    plan = deps.catalog.plan(item.partition(":")[2])
    started = record.get("createdAt")
    entries, _ = deps.store.list_entries(user_id, RECENT_ENTRIES, None)
    allowance = next((e for e in entries if e.get("type") == ALLOWANCE and e.get("billingReason") == FIRST_INVOICE
                      and (started is None or e.get("createdAt") is None or e["createdAt"] >= started)), None)
    user = deps.store.get_user(user_id) or {}
    return {
        "sessionId": session_id,
        "planId": plan.id if plan else None,
        "planName": plan.name if plan else None,
        "credited": allowance is not None,
        "tokens": int(allowance["amount"]) if allowance else None,
        "balance": int(user.get("tokenBalance") or 0),
        "subscription": describe(deps, user.get("subscription")),
    }
