"""The wallet's links to Stripe, for the signed-in user's own payments and plan only.

- ``receipt_url(user_id, payment_id)``: the Stripe receipt of one of the user's paid purchases
  (a package's Checkout Session ``cs_...`` or a plan invoice ``in_...``), read on demand from
  the charge that paid it (``receipt_url``; Stripe keeps it current with refunds). Another
  user's payment or an unknown id is ``UnknownPurchase`` (404) and asks Stripe nothing; a
  payment not paid (yet) or a charge without a receipt is ``NoReceipt`` (404).
- ``billing_portal_url(user_id)``: a Stripe customer portal session for the customer of the
  user's mirrored subscription (the mirror only Stripe's webhooks write; the subscription's
  ``metadata.userId`` must be this user's). No subscription: ``NoPortal`` (404).

Both only read from Stripe (a portal session changes nothing until the person acts in it),
are bounded per user and minute (``RateLimited``, 429), and turn any Stripe failure into
``StripeUnavailable`` (502) after logging it: nothing was changed.
"""
from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from core import redis_keys
from core.deps import Deps
from core.domain.errors import InvalidRequest, UnknownPurchase
from core.domain.payment import FULFILLED
from core.services.checkout import RateLimited

log = logging.getLogger("tokenbank.wallet")
RECEIPTS_PER_MINUTE = 30
PORTALS_PER_MINUTE = 10
_PAYMENT_ID = re.compile(r"(cs|in)_[A-Za-z0-9_]{1,250}")
PORTAL_RETURN_PATH = "/buy-tokens?from=billing-portal"


class NoReceipt(Exception):
    """The payment has no receipt to show (not paid yet, or Stripe has none): 404."""


class NoPortal(Exception):
    """The user has no subscription whose customer could manage it: 404."""


class StripeUnavailable(Exception):
    """Stripe refused or could not be reached; nothing changed: 502."""


def per_minute(deps: Deps, user_id: str, what: str, limit: int, message: str) -> None:
    """Count one call of ``what`` by the user; over ``limit`` in a minute: RateLimited."""
    key = redis_keys.wallet_calls(user_id, what)
    pipe = deps.redis.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, 60, nx=True)
    if int(pipe.execute()[0]) > limit:
        raise RateLimited(int(deps.redis.ttl(key)) or 60, message)


def _web_address(url: object) -> bool:
    """Only an http(s) address reaches the page (it becomes a link and a navigation there)."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return parts.scheme in ("https", "http") and bool(parts.netloc)


def valid_payment_id(payment_id: object) -> bool:
    return isinstance(payment_id, str) and _PAYMENT_ID.fullmatch(payment_id) is not None


def receipt_url(deps: Deps, user_id: str, payment_id: object) -> dict:
    """``{"paymentId", "receiptUrl"}`` for one of the user's own paid payments."""
    if not valid_payment_id(payment_id):
        raise InvalidRequest("not a purchase id (a Checkout Session cs_... or an invoice in_...)", "paymentId")
    purchase = deps.store.get_purchase(payment_id)  # type: ignore[arg-type]
    if purchase is None or purchase.get("userId") != user_id:
        raise UnknownPurchase("no such purchase for this account")
    if purchase.get("status") != FULFILLED:
        raise NoReceipt("This purchase is not paid, so it has no receipt.")
    per_minute(deps, user_id, "receipt", RECEIPTS_PER_MINUTE, "Too many receipt requests; please wait a minute.")
    context = {"user_id": user_id, "payment_id": payment_id}
    try:
        intent = purchase.get("paymentIntentId")
        if not intent and str(payment_id).startswith("in_"):
            intent = deps.payments.payment_intent_of_invoice(payment_id)  # type: ignore[arg-type]
        url = deps.payments.receipt_url(intent) if intent else None
    except Exception as exc:  # the adapter's SDK errors: services never import the SDK
        log.error("stripe did not answer a receipt: %s", type(exc).__name__, extra=context)
        raise StripeUnavailable(str(exc)) from exc
    if not _web_address(url):
        log.warning("no receipt at stripe for a paid purchase", extra=context)
        raise NoReceipt("Stripe has no receipt for this purchase.")
    return {"paymentId": payment_id, "receiptUrl": url}


def billing_portal_url(deps: Deps, user_id: str) -> dict:
    """``{"url"}``: a customer portal session for the user's own subscription's customer."""
    stored = (deps.store.get_user(user_id) or {}).get("subscription") or {}
    sub_id = stored.get("id")
    if not isinstance(sub_id, str) or not sub_id:
        raise NoPortal("You have no plan to manage.")
    per_minute(deps, user_id, "portal", PORTALS_PER_MINUTE, "Too many requests; please wait a minute.")
    context = {"user_id": user_id, "subscription_id": sub_id}
    try:
        sub = deps.payments.subscription(sub_id)
        owner = ((sub or {}).get("metadata") or {}).get("userId")
        customer = (sub or {}).get("customer")
        customer = customer.get("id") if isinstance(customer, dict) else customer
        if sub is None or owner != user_id or not isinstance(customer, str) or not customer:
            log.warning("the mirrored subscription is not this user's at stripe", extra=context)
            raise NoPortal("You have no plan to manage.")
        url = deps.payments.billing_portal_session(customer, deps.settings.public_base_url + PORTAL_RETURN_PATH)
        if not _web_address(url):
            raise ValueError("the portal session's url is not a web address")
    except NoPortal:
        raise
    except Exception as exc:  # the adapter's SDK errors
        log.error("stripe did not open a billing portal session: %s", type(exc).__name__, extra=context)
        raise StripeUnavailable(str(exc)) from exc
    log.info("billing portal session opened", extra=context)
    return {"url": url}
