"""Realistic Stripe events for tests, built on Stripe's own example objects and signed
with the SDK's ``stripe.WebhookSignature.generate_signature_header``."""
from __future__ import annotations

import copy
import itertools
import json
import secrets
import time
from functools import lru_cache
from pathlib import Path

import stripe

# Stripe's openapi/fixtures3.json, copied into the repository (devstack/fixtures/README.md).
FIXTURES = Path(__file__).with_name("fixtures") / "stripe-openapi-fixtures3.json"
PACKAGES = {"starter": (50, 499), "basic": (200, 1499), "pro": (500, 2999), "premium": (1000, 4999)}
_seq = itertools.count(1)


@lru_cache(maxsize=None)
def _fixture(kind: str) -> dict:
    return json.loads(FIXTURES.read_text())["resources"][kind]


def new_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(6)}{next(_seq)}"


def checkout_session(user_id: str = "user_1", package: str = "starter", *, session_id: str | None = None,
                     payment_status: str = "paid", **overrides) -> dict:
    tokens, price = PACKAGES.get(package, (50, 499))
    obj = copy.deepcopy(_fixture("checkout.session"))
    obj.update({
        "id": session_id or new_id("cs"),
        "mode": "payment",
        "status": "complete" if payment_status in ("paid", "unpaid") else "open",
        "payment_status": payment_status,
        "client_reference_id": user_id,
        "metadata": {"userId": user_id, "packageId": package, "tokens": str(tokens)},
        "amount_total": price,
        "amount_subtotal": price,
        "currency": "usd",
        "payment_intent": new_id("pi"),
        "created": int(time.time()),
    })
    obj.update(overrides)
    return obj


def event(obj: dict, event_type: str = "checkout.session.completed", *, event_id: str | None = None) -> dict:
    evt = copy.deepcopy(_fixture("event"))
    evt.update({"id": event_id or new_id("evt"), "type": event_type, "created": int(time.time()),
                "livemode": False, "data": {"object": obj}, "object": "event"})
    return evt


def sign(body: str, secret: str, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)


def signed(evt: dict, secret: str, timestamp: int | None = None) -> tuple[bytes, dict]:
    body = json.dumps(evt)
    return body.encode(), {"Stripe-Signature": sign(body, secret, timestamp), "Content-Type": "application/json"}
