"""The pinned Stripe API version (core/stripe_api.py) is the installed SDK's and the sandbox's.

An SDK upgrade that moves ``stripe.api_version`` fails here first: read the changelog, update
``STRIPE_API_VERSION``, the sandbox's version and the webhook endpoint (docs/RUNBOOK.md).
"""
from __future__ import annotations

import stripe

from core.stripe_api import STRIPE_API_VERSION
from sandbox import inprocess
from sandbox.config import API_VERSION as SANDBOX_API_VERSION
from sandbox.config import Config

LINE_ITEMS = [{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 499, "product_data": {"name": "x"}}}]


def test_the_pinned_version_is_the_installed_sdks():
    assert STRIPE_API_VERSION == stripe.api_version, (
        f"stripe {stripe.VERSION} speaks {stripe.api_version}; core/stripe_api.py pins {STRIPE_API_VERSION}")


def test_the_sandbox_speaks_the_pinned_version():
    assert SANDBOX_API_VERSION == Config().api_version == STRIPE_API_VERSION


def test_a_client_pinned_to_it_sends_it_and_the_sandbox_accepts_and_reports_it():
    sdk = inprocess.client(stripe_version=STRIPE_API_VERSION)
    session = sdk.v1.checkout.sessions.create(params={"mode": "payment", "line_items": LINE_ITEMS})
    sent = sdk.http.requests[-1]["headers"]
    assert sent["Stripe-Version"] == STRIPE_API_VERSION
    assert session.last_response.code == 200
    assert session.last_response.headers["Stripe-Version"] == STRIPE_API_VERSION
    sdk.v1.checkout.sessions.expire(session.id)
    events = sdk.v1.events.list(params={"type": "checkout.session.expired"})
    assert [e.api_version for e in events.data] == [STRIPE_API_VERSION]


def test_without_a_version_header_the_sandbox_reports_the_pinned_version():
    sdk = inprocess.client()
    resp = sdk.http.test_client.get("/v1/checkout/sessions", headers={"Authorization": f"Bearer {inprocess.TEST_KEY}"})
    assert resp.status_code == 200 and resp.headers["Stripe-Version"] == STRIPE_API_VERSION
