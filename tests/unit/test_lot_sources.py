"""Where lots come from, through the real handlers on the dict-backed unit of work: a package's
lot carries its cost basis, a plan period's lot expires at the period end above the catalog's
rollover cap, a refund takes back from the lot its payment bought, and the migration gives
an account older than lots its lots, once."""
from __future__ import annotations

import json

from core.handlers.registry import process_stripe_event
from core.services import balance, expiry, migrate_lots
from core.services.audit import audit
from tests.unit.fakes import FIXED_NOW, FakeLedgerStore, FakePayments, checkout_session, event, fake_redis, make_deps
from tests.unit.test_subscriptions import PERIOD_END, invoice


class Clock:
    now = FIXED_NOW

    def __call__(self):
        return self.now


def setup():
    store, payments, clock = FakeLedgerStore(), FakePayments(), Clock()
    return store, payments, clock, make_deps(store, fake_redis(), payments=payments, clock=clock)


def deliver(deps, obj, event_type):
    return process_stripe_event(deps, json.dumps(event(obj, event_type)))


def test_a_package_lot_has_its_cost_basis_and_a_refund_takes_from_it_first():
    store, payments, clock, deps = setup()
    payments.intents["pi_1"] = {"id": "pi_1", "object": "payment_intent", "amount": 1499,
                                "metadata": {"userId": "u1", "packageId": "basic", "tokens": "200"}}
    deliver(deps, checkout_session("u1", "basic", session_id="cs_1", payment_intent="pi_1"),
            "checkout.session.completed")
    lot = store.docs["lots"]["purchase_cs_1"]
    assert {k: lot[k] for k in ("userId", "source", "amount", "remaining", "costCents", "currency", "paymentId")} == {
        "userId": "u1", "source": "purchase", "amount": 200, "remaining": 200, "costCents": 1499, "currency": "usd",
        "paymentId": "cs_1"}
    balance.grant(deps, "u1", 100, "welcome", "w", "test", source="promo", expires_at=int(FIXED_NOW) + 3600)
    balance.spend(deps, "u1", 150, "work", "s1", "user:u1")  # promo 100 first, then 50 of the purchase
    assert store.docs["lots"]["purchase_cs_1"]["remaining"] == 150
    charge = {"id": "ch_1", "object": "charge", "amount": 1499, "amount_refunded": 1499, "refunded": True,
              "payment_intent": "pi_1", "metadata": {}}
    deliver(deps, charge, "charge.refunded")
    refund = next(e for e in store.ledger.values() if e["type"] == "refund")
    # the payment's 200 tokens come back: the 150 left in its own lot, then 50 from the rest (nothing left: debt)
    assert refund["amount"] == -200 and refund["lots"] == {"purchase_cs_1": -150}
    assert store.users["u1"]["tokenBalance"] == -50 and store.users["u1"]["debt"] == 50
    assert audit(deps).violations == []


def test_a_plan_period_expires_above_the_rollover_cap_at_the_period_end():
    store, payments, clock, deps = setup()
    deliver(deps, invoice(invoice_id="in_1", billing_reason="subscription_create"), "invoice.paid")
    lot = store.docs["lots"]["subscription_in_1"]
    assert (lot["source"], lot["expiresAt"], lot["rolloverCap"], lot["planId"]) == ("plan", PERIOD_END, 300,
                                                                                   "monthly")
    balance.spend(deps, "u1", 100, "work", "s1", "user:u1")
    clock.now = PERIOD_END
    assert expiry.run(deps)["tokensExpired"] == 200  # 500 left: 300 roll over, 200 expire
    lot = store.docs["lots"]["subscription_in_1"]
    assert (lot["remaining"], lot["rolledOver"], lot["expiresAt"], lot["expired"]) == (300, True, None, 200)
    assert store.users["u1"]["tokenBalance"] == 300 and store.users["u1"]["totalTokensExpired"] == 200
    assert expiry.run(deps)["accounts"] == 0
    assert audit(deps).violations == []


def test_the_migration_gives_old_accounts_lots_once():
    store, payments, clock, deps = setup()
    store.users["old"] = {"tokenBalance": 230, "totalTokensPurchased": 300, "totalTokensEarned": 50,
                          "totalTokensSpent": 120, "debt": 0}
    for i, (entry_id, kind, amount) in enumerate([("purchase_cs_a", "purchase", 100), ("grant_b", "grant", 50),
                                                  ("spend_c", "spend", -120),
                                                  ("purchase_cs_d", "purchase", 200)]):
        store.ledger[entry_id] = {"userId": "old", "type": kind, "amount": amount, "createdAt": FIXED_NOW + i,
                                  **({"checkoutSessionId": entry_id[9:], "amountPaid": 999, "currency": "usd"}
                                     if kind == "purchase" else {})}
        if kind == "purchase":
            store.purchases[entry_id[9:]] = {"userId": "old", "status": "fulfilled", "tokens": amount}
    first = migrate_lots.migrate_account(deps, "old")
    assert first == {"userId": "old", "lotsCreated": 3, "tokensAssigned": 230}
    lots = {k: (v["remaining"], v["migratedConsumed"]) for k, v in store.docs["lots"].items()}
    assert lots == {"purchase_cs_a": (0, 100), "grant_b": (30, 20), "purchase_cs_d": (200, 0)}
    assert migrate_lots.migrate_account(deps, "old") == {"userId": "old", "lotsCreated": 0, "tokensAssigned": 0}
    assert sorted(store.users["old"]["lots"]) == ["grant_b", "purchase_cs_d"]
    balance.spend(deps, "old", 40, "work", "s2", "user:old")  # oldest first among lots without expiry
    assert store.docs["lots"]["grant_b"]["remaining"] == 0 and store.docs["lots"]["purchase_cs_d"]["remaining"] == 190
    assert audit(deps).violations == []
