"""The money model (tests/support/money_model.py) on the real stack, with fewer examples.

The same Hypothesis state machine as tests/unit/test_money_model.py, driven end to end: every
Stripe event is signed and POSTed to /api/stripe/webhook, the real Celery worker processes it
(asking the local Stripe sandbox whose PaymentIntent a charge belongs to) and the driver waits
for ``stripe_events/{event id}`` to reach a final status before the machine goes on; spends and
grants and holds (placed, captured, released) go over HTTP with the service key; adjustments (no HTTP route) call the service. The
invariants read the Firestore emulator: ``users/{uid}`` and the ``transactions`` ledger.

Each example starts from a clean Firestore and Redis data database (the users are fixed).
Plan invoices are left out (``PLANS = False``): the sandbox cannot answer for invoices yet.
"""
from __future__ import annotations

import time

import redis as redis_lib
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis.stateful import run_state_machine_as_test

from core.config import DEV_SERVICE_KEY
from core.domain.errors import AccountFrozen, InsufficientFunds, KeyConflict
from core.services import balance
from tests.integration.conftest import PROJECT, doc, docs
from devstack import stripe_events as events
from tests.support.money_model import MoneyMachine
from tests.support.payments import paid_payment_intent
from tests.support.processes import clear_firestore

SERVICE = {"X-Service-Key": DEV_SERVICE_KEY}
FINAL_STATUSES = ("processed", "ignored", "rejected", "dead_lettered")
ANSWERS = {200: "ok", 201: "ok", 402: "insufficient", 423: "frozen", 409: "conflict", 410: "expired"}
REAL_TTL = 86_400  # the stack's clock is real: the model's holds must not expire while it runs
EVENT_TIMEOUT = 30.0  # seconds for the worker to settle one event

MODEL_SETTINGS = hypothesis_settings(max_examples=10, stateful_step_count=30, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])


class StackDriver:
    """The Driver protocol over the web tier, the worker, Firestore and the Stripe sandbox."""

    def __init__(self, settings, deps, web_client, secret, stripe_api):
        self.deps, self.web, self.secret, self.stripe_api = deps, web_client, secret, stripe_api
        clear_firestore(settings.firestore_emulator_host, PROJECT)  # a clean state per example
        redis_lib.Redis.from_url(settings.redis_url).flushdb()

    # -- Stripe -------------------------------------------------------------------------------
    def new_payment_intent(self, amount, metadata):
        return paid_payment_intent(self.stripe_api, amount, metadata or None).id

    def know_invoice(self, pi, invoice):
        raise AssertionError("the Stripe sandbox has no invoices: run the machine with PLANS = False")

    def deliver(self, event):
        body, headers = events.signed(event, self.secret)
        resp = self.web.post("/api/stripe/webhook", data=body, headers=headers)
        assert resp.status_code == 200, (event["id"], event["type"], resp.status_code, resp.data)
        record = self._settled(event["id"])
        assert record["status"] != "dead_lettered", (
            f"event {event['id']} ({event['type']}) was dead-lettered: error={record.get('error')!r} "
            f"outcome={record.get('outcome')!r}")

    def _settled(self, event_id: str) -> dict:
        deadline = time.monotonic() + EVENT_TIMEOUT
        while True:
            record = doc(self.deps, "stripe_events", event_id) or {}
            if record.get("status") in FINAL_STATUSES:
                return record
            assert time.monotonic() < deadline, f"event {event_id} not settled in {EVENT_TIMEOUT}s: {record!r}"
            time.sleep(0.02)

    # -- the app's own operations ---------------------------------------------------------------
    def _post(self, path: str, body: dict, answer: dict | None = None) -> str:
        resp = self.web.post(path, json=body, headers=SERVICE)
        assert resp.status_code in ANSWERS, (path, body, resp.status_code, resp.get_json(silent=True))
        if answer is not None:
            answer.update(resp.get_json() or {})
        return ANSWERS[resp.status_code]

    def hold(self, user, amount, key, ttl):
        placed: dict = {}
        answer = self._post("/api/tokens/holds", {"userId": user, "amount": amount, "idempotencyKey": key,
                                                  "ttlSeconds": REAL_TTL - ttl}, placed)
        return answer, placed.get("holdId")

    def capture(self, user, hold_id, amount, key):
        return self._post(f"/api/tokens/holds/{hold_id}/capture", {"userId": user, "amount": amount,
                                                                   "idempotencyKey": key})

    def release(self, user, hold_id):
        return self._post(f"/api/tokens/holds/{hold_id}/release", {"userId": user})

    def spend(self, user, amount, key):
        return self._post("/api/tokens/spend", {"userId": user, "amount": amount, "reason": "model",
                                                "idempotencyKey": key})

    def grant(self, user, amount, key):
        return self._post("/api/tokens/grant", {"userId": user, "amount": amount, "reason": "model",
                                                "idempotencyKey": key, "createAccount": True})

    def adjust(self, user, amount, key):
        try:
            balance.adjust(self.deps, user, amount, "model", key, "model")
            return "ok"
        except InsufficientFunds:
            return "insufficient"
        except AccountFrozen:
            return "frozen"
        except KeyConflict:  # a replayed key with another amount, as the HTTP routes answer 409
            return "conflict"

    # -- what the machine reads -------------------------------------------------------------------
    def account(self, user):
        return doc(self.deps, "users", user) or {}

    def entries(self, user):
        return [{**{k: v for k, v in e.items() if k != "_id"}, "id": e["_id"]}
                for e in docs(self.deps, "transactions", userId=user)]

    def event_status(self, event_id):
        return (doc(self.deps, "stripe_events", event_id) or {}).get("status")


def test_the_money_model_holds_on_the_real_stack(settings, deps, worker, web_client, secret, stripe_api):
    class StackMoneyMachine(MoneyMachine):
        PLANS = False  # the sandbox has no invoices yet
        EXPIRY = False  # the stack's clock is real: no promo expiry, no ticks

        def make_driver(self):
            return StackDriver(settings, deps, web_client, secret, stripe_api)

    run_state_machine_as_test(StackMoneyMachine, settings=MODEL_SETTINGS)
