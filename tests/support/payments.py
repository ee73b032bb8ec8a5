"""PaymentIntents in the Stripe sandbox, as Checkout or an invoice would have made them: for
tests whose worker asks Stripe whose payment a charge is."""
from __future__ import annotations

from devstack import stripe_events as events

PLAN_PRICE = 2499  # catalog plan "monthly"


def paid_payment_intent(stripe_api, amount: int, metadata: dict | None = None):
    """A succeeded PaymentIntent (with its charge) in the sandbox."""
    params = {"amount": amount, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
              "allowed_payment_method_types": ["card"]}
    if metadata:
        params["metadata"] = metadata
    pi = stripe_api.v1.payment_intents.create(params=params)
    assert pi.status == "succeeded" and pi.latest_charge, pi
    return pi


def package_payment(stripe_api, uid: str, package: str):
    """What Checkout creates for a package: a PaymentIntent carrying payment_intent_data.metadata."""
    tokens, price = events.PACKAGES[package]
    return paid_payment_intent(stripe_api, price, {"userId": uid, "packageId": package, "tokens": str(tokens)})


def plan_payment(stripe_api):
    """A plan invoice's PaymentIntent: Stripe puts no metadata on it."""
    return paid_payment_intent(stripe_api, PLAN_PRICE)
