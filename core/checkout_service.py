"""Starting a purchase: the gate, then a Stripe Checkout Session built from the catalog.

A package is a one-time payment (``start_checkout``); a token plan is a subscription
(``start_plan_checkout``). Both pass the same purchase gate.

Price, tokens and currency come from the catalog, never from the client. The session
carries the user and package in ``client_reference_id`` and ``metadata``, and the same
metadata on its PaymentIntent so refunds and disputes map back to the purchase.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Callable

from core import metrics, purchase_gate
from core.deps import Deps
from core.ids import is_valid_doc_id

log = logging.getLogger("tokenbank.checkout")

SESSION_LIFETIME_SECONDS = 31 * 60  # Stripe's minimum expires_at is 30 minutes ahead
MAX_CLIENT_KEY_CHARS = 64


class InvalidRequest(Exception):
    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class RateLimited(Exception):
    def __init__(self, retry_after_seconds: int, message: str):
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
        self.message = message


class PaymentProviderError(Exception):
    """Stripe did not create the session; nothing was reserved."""


@dataclass(frozen=True)
class CheckoutStarted:
    session_id: str
    url: str
    expires_at: int


def _human_wait(seconds: int) -> str:
    minutes = (seconds + 59) // 60
    if minutes < 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = (minutes + 59) // 60
    return f"{hours} hour{'s' if hours != 1 else ''}"


def start_checkout(deps: Deps, user_id: str, package_id: object, client_key: object = None) -> CheckoutStarted:
    package = deps.catalog.get(package_id)
    if package is None:
        raise InvalidRequest(f"unknown package {package_id!r}; choose one of "
                             f"{', '.join(p.id for p in deps.catalog.packages)}", "packageId")
    metadata = {"userId": user_id, "packageId": package.id, "tokens": str(package.tokens)}
    base = deps.settings.public_base_url.rstrip("/")

    def params(expires_at: int) -> dict:
        return {
            "mode": "payment",
            "line_items": [{"quantity": 1, "price_data": {
                "currency": package.currency, "unit_amount": package.price_cents,
                "product_data": {"name": f"{package.name}: {package.tokens} tokens"}}}],
            "client_reference_id": user_id,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "success_url": f"{base}/purchase/success?session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{base}/purchase/cancel?package={package.id}",
            "expires_at": expires_at,
        }

    return _gated_session(deps, user_id, client_key, params, {"package_id": package.id})


def start_plan_checkout(deps: Deps, user_id: str, plan_id: object, client_key: object = None) -> CheckoutStarted:
    """A token plan: a ``mode=subscription`` session with a recurring price from the catalog.

    The subscription carries ``metadata.userId``/``planId``; each paid invoice then credits
    the plan's allowance (core/subscriptions.py). Same gate, URLs and idempotency as a package.
    """
    plan = deps.catalog.plan(plan_id)
    if plan is None:
        raise InvalidRequest(f"unknown plan {plan_id!r}; choose one of "
                             f"{', '.join(p.id for p in deps.catalog.plans)}", "planId")
    metadata = {"userId": user_id, "planId": plan.id}
    base = deps.settings.public_base_url.rstrip("/")

    def params(expires_at: int) -> dict:
        return {
            "mode": "subscription",
            "line_items": [{"quantity": 1, "price_data": {
                "currency": plan.currency, "unit_amount": plan.price_cents,
                "recurring": {"interval": plan.interval},
                "product_data": {"name": f"{plan.name}: {plan.tokens_per_period} tokens every {plan.interval}"}}}],
            "client_reference_id": user_id,
            "metadata": metadata,
            "subscription_data": {"metadata": metadata},
            "success_url": f"{base}/purchase/success?session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{base}/purchase/cancel?plan={plan.id}",
            "expires_at": expires_at,
        }

    return _gated_session(deps, user_id, client_key, params, {"plan_id": plan.id})


def _gated_session(deps: Deps, user_id: str, client_key: object, params: Callable[[int], dict],
                   log_extra: dict) -> CheckoutStarted:
    """Reserve a place in the purchase gate, then create the session (released if Stripe refuses)."""
    settings = deps.settings
    if client_key is None:
        client_key = secrets.token_hex(16)
    if not isinstance(client_key, str) or not client_key or len(client_key) > MAX_CLIENT_KEY_CHARS \
            or not is_valid_doc_id(client_key):
        raise InvalidRequest("Idempotency-Key must be 1-64 printable characters", "Idempotency-Key")
    now = deps.clock()
    expires_at = int(now) + SESSION_LIFETIME_SECONDS
    placeholder = f"pending:{client_key}"
    decision = purchase_gate.reserve(deps.redis, user_id, placeholder, int(now * 1000), expires_at * 1000,
                                     settings.purchases_per_hour, settings.purchases_per_day)
    if not decision.allowed:
        metrics.RATE_LIMITED.inc()
        log.warning("purchase gate refused checkout", extra={"user_id": user_id, "last_hour": decision.last_hour,
                                                             "last_day": decision.last_day})
        limit = (f"{settings.purchases_per_hour} purchases per hour"
                 if decision.last_hour >= settings.purchases_per_hour else f"{settings.purchases_per_day} per day")
        raise RateLimited(decision.retry_after_seconds,
                          f"You have reached the limit of {limit} (open checkouts count until they expire). "
                          f"Please try again in {_human_wait(decision.retry_after_seconds)}.")
    try:
        session = deps.stripe.v1.checkout.sessions.create(
            params=params(expires_at), options={"idempotency_key": f"checkout:{user_id}:{client_key}"})
    except Exception as exc:
        purchase_gate.release(deps.redis, user_id, placeholder)
        log.error("stripe refused checkout session: %s", exc, extra={"user_id": user_id})
        raise PaymentProviderError(str(exc)) from exc
    session_expires = int(session["expires_at"] or expires_at)
    purchase_gate.confirm(deps.redis, user_id, placeholder, session["id"], session_expires * 1000)
    log.info("checkout session created", extra={"user_id": user_id, "session_id": session["id"], **log_extra})
    return CheckoutStarted(session["id"], session["url"], session_expires)
