"""The Stripe API version tokenbank reads and writes: pinned in one place.

The code reads Stripe objects as this version shapes them (e.g. an invoice's subscription
under ``parent.subscription_details``); the Stripe client sends it as ``Stripe-Version``
(core/bootstrap.py). The production webhook endpoint must be created with this
``api_version`` too (docs/RUNBOOK.md, "Stripe API version"), so events arrive in the same
shape. It is the ``stripe.api_version`` of the pinned stripe SDK (16.1.0) and the version
the local sandbox speaks; tests/unit/test_stripe_api_version.py fails when either moves.
"""
STRIPE_API_VERSION = "2026-10-28.endive"
