"""The money model (tests/support/money_model.py) on the real handlers and the domain, over the
dict-backed unit of work: thousands of random interleavings of purchases, plan invoices,
refunds, disputes, spends, grants and adjustments, each event delivered 0-3 times in any order."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, settings

from core.services.audit import audit
from core.domain.errors import AccountFrozen, HoldConflict, HoldExpired, InsufficientFunds, KeyConflict
from core.handlers.registry import process_stripe_event
from core.services import balance, expiry, holds
from tests.support.money_model import MoneyMachine
from tests.unit.fakes import FIXED_NOW, FakeLedgerStore, FakePayments, fake_redis, make_deps


class DictDriver:
    def __init__(self):
        self.store, self.payments = FakeLedgerStore(), FakePayments()
        self.now = FIXED_NOW
        self.deps = make_deps(self.store, fake_redis(), payments=self.payments, clock=lambda: self.now)

    def new_payment_intent(self, amount, metadata):
        pi = f"pi_model_{len(self.payments.intents) + 1}"
        self.payments.intents[pi] = {"id": pi, "object": "payment_intent", "amount": amount, "metadata": metadata}
        return pi

    def know_invoice(self, pi, invoice):
        self.payments.invoices_by_intent[pi] = invoice

    def deliver(self, event):
        process_stripe_event(self.deps, json.dumps(event))  # any exception fails the example

    def _answer(self, call) -> str:
        try:
            call()
            return "ok"
        except InsufficientFunds:
            return "insufficient"
        except AccountFrozen:
            return "frozen"
        except (KeyConflict, HoldConflict):
            return "conflict"
        except HoldExpired:
            return "expired"

    def spend(self, user, amount, key):
        return self._answer(lambda: balance.spend(self.deps, user, amount, "model", key, "model"))

    def grant(self, user, amount, key):
        return self._answer(lambda: balance.grant(self.deps, user, amount, "model", key, "model", create_account=True))

    def adjust(self, user, amount, key):
        return self._answer(lambda: balance.adjust(self.deps, user, amount, "model", key, "model"))

    def hold(self, user, amount, key, ttl):
        placed = {}
        answer = self._answer(lambda: placed.update(holds.place(self.deps, user, amount, key, ttl, None, "model")))
        return answer, placed.get("holdId")

    def capture(self, user, hold_id, amount, key):
        return self._answer(lambda: holds.capture(self.deps, user, hold_id, amount, key, "model"))

    def release(self, user, hold_id):
        return self._answer(lambda: holds.release(self.deps, user, hold_id, "model"))

    def promo(self, user, amount, key, expires_at):
        return self._answer(lambda: balance.grant(self.deps, user, amount, "model", key, "model", create_account=True,
                                                  expires_at=int(FIXED_NOW) + expires_at, source="promo"))

    def tick(self, seconds):
        self.now += seconds
        expiry.run(self.deps)

    def account(self, user):
        return self.store.users.get(user) or {}

    def entries(self, user):
        return [{"id": k, **v} for k, v in self.store.ledger.items() if v["userId"] == user]

    def event_status(self, event_id):
        return (self.store.events.get(event_id) or {}).get("status")


class DictMoneyMachine(MoneyMachine):
    def make_driver(self):
        return DictDriver()

    def teardown(self):
        # The daily ledger audit finds nothing to report, whatever happened.
        assert audit(self.driver.deps).violations == []
        # Every change has its outgoing event and every event its change, numbered 1..n per account.
        store = self.driver.store
        for user, doc in store.users.items():
            events = sorted((e for e in store.docs.get("outbox", {}).values() if e["userId"] == user),
                            key=lambda e: e["seq"])
            assert [e["seq"] for e in events] == list(range(1, int(doc.get("eventSeq") or 0) + 1)), user
            entries = {k for k, v in store.ledger.items() if v["userId"] == user}
            tokens = [e["data"]["entryId"] for e in events if e["type"].startswith("tokens.") or
                      e["type"] == "lot.expired"]
            assert sorted(tokens) == sorted(entries), user


TestMoneyModel = DictMoneyMachine.TestCase
TestMoneyModel.settings = settings(max_examples=2000, stateful_step_count=30, deadline=None,
                                   suppress_health_check=[HealthCheck.too_slow])
