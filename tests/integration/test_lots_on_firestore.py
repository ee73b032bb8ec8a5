"""Lots on the real Firestore emulator and Redis, with a clock the test controls.

The services and Stripe event handlers run in this process against the emulator with
``deps`` whose ``clock`` the test moves (``dataclasses.replace(deps, clock=...)``): the same
code the web tier and the worker run, at the times the test chooses. Refunds go through
signed webhooks and the real Celery worker; the migration runs as the operators' CLI
(``tokenbank lots migrate``) in its own process.

What this file proves:
1. Every credit (grant, promo, purchase, plan allowance) creates a ``lots`` document and an
   entry on ``users/{uid}.lots``; spends consume lots soonest expiry first, promo before
   granted before paid at equal expiry, oldest first, and each spend entry records the lots
   it took from (``lots``: id -> change).
2. Expiry with a moved clock: an expired lot stops being available at once; ``expiry.run``
   writes its ``expiry`` entry once — run twice, or five times at once from two processes'
   batchers, still one entry — and a promo grant made through the API with ``expiresAt``
   expires exactly so; expiry keeps what open holds still need and takes it when they end.
3. A plan allowance (credited by the plan handler from ``invoice.paid``) expires at its
   period end above the plan's rollover cap (300): what is kept rolls over without expiry,
   and the cap counts what earlier periods rolled over.
4. A refund takes back from the payment's own lot first, then the other lots, then debt;
   a later credit repays the debt and its lot keeps only the rest.
5. The lots migration on accounts created the old way (a users document and ledger entries
   without lots, written directly) gives each credit a lot holding what the balance still
   holds, newest credit first; a second run changes nothing; accounts with lots are left
   alone; the audit is clean afterwards.
Every test ends with a clean audit (core/services/audit.py, at the test's clock).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from broker.event_queue import CeleryEventQueue
from core.bootstrap import bootstrap
from core.domain.errors import InsufficientFunds
from core.domain.ledger import keyed_entry_id
from core.handlers.registry import process_stripe_event
from core.services import accounts, balance, expiry, holds
from core.services.audit import audit
from devstack import stripe_events as events
from tests.integration.conftest import PROJECT, doc, docs, integration_env
from tests.integration.test_holds_api import SERVICE, Clock
from tests.integration.test_ledger_operations import buy, charge_refunded, deliver, processed
from tests.support.tokens import bearer

DAY = 86_400
PLAN_PRICE = 2499


@pytest.fixture
def clock():
    return Clock(float(int(time.time())))  # a whole second: lot times read plainly


@pytest.fixture
def clocked(deps, clock):
    return dataclasses.replace(deps, clock=clock)


def clean_audit(deps) -> None:
    report = audit(deps)
    assert report.ok, [v.as_dict() for v in report.violations]


def grant(deps, uid, amount, key, source=None, expires_at=None, create=True):
    return balance.grant(deps, uid, amount, "lot test", key, "service", create_account=create,
                         expires_at=expires_at, source=source)


def spend(deps, uid, amount, key):
    posted = balance.spend(deps, uid, amount, "lot test", key, f"user:{uid}")
    return doc(deps, "transactions", posted.entry_id)


def grant_id(uid, key):
    return keyed_entry_id("grant", uid, key)


def lot(deps, lot_id) -> dict:
    return doc(deps, "lots", lot_id)


def open_lots(deps, uid) -> dict[str, int]:
    """users/{uid}.lots as id -> remaining (the account's open lots)."""
    return {k: v["remaining"] for k, v in (doc(deps, "users", uid).get("lots") or {}).items()}


def lot_docs(deps, uid) -> dict[str, int]:
    return {d["_id"]: d["remaining"] for d in docs(deps, "lots", userId=uid)}


def purchase_here(deps, uid, package="starter") -> str:
    """checkout.session.completed handled in this process (the worker's handler, the test's clock)."""
    session = events.checkout_session(uid, package)
    outcome = process_stripe_event(deps, json.dumps(events.event(session)))
    assert outcome.status == "credited", outcome
    return f"purchase_{session['id']}"


def expiry_entries(deps, uid) -> list[dict]:
    return docs(deps, "transactions", userId=uid, type="expiry")


# --- 1. every credit is a lot; spends in order ---------------------------------------------------

def test_every_credit_is_a_lot_and_spends_take_soonest_expiry_then_promo_then_oldest(clocked, clock):
    uid, t0 = "orderly", clock()
    grant(clocked, uid, 10, "never")  # a grant, no expiry
    clock.advance(1)
    paid_old = purchase_here(clocked, uid)  # 50 paid, no expiry
    clock.advance(1)
    paid_new = purchase_here(clocked, uid)
    clock.advance(1)
    grant(clocked, uid, 10, "promo-later", source="promo", expires_at=int(t0) + 2 * DAY)
    clock.advance(1)
    grant(clocked, uid, 10, "promo-soon", source="promo", expires_at=int(t0) + DAY)
    clock.advance(1)
    grant(clocked, uid, 10, "grant-soon", expires_at=int(t0) + DAY)
    never, promo_later, promo_soon, grant_soon = (grant_id(uid, k) for k in
                                                  ("never", "promo-later", "promo-soon", "grant-soon"))

    # every credit: a lot document, an open lot on the account, the entry naming its lot
    expected = {never: ("grant", 10, None, 0), paid_old: ("purchase", 50, None, 1),
                paid_new: ("purchase", 50, None, 2), promo_later: ("promo", 10, int(t0) + 2 * DAY, 3),
                promo_soon: ("promo", 10, int(t0) + DAY, 4), grant_soon: ("grant", 10, int(t0) + DAY, 5)}
    for lot_id, (source, amount, expires_at, created) in expected.items():
        found = lot(clocked, lot_id)
        assert (found["userId"], found["source"], found["amount"], found["remaining"], found["expiresAt"],
                found["createdAt"], found["open"]) == (uid, source, amount, amount, expires_at, t0 + created, True)
        assert doc(clocked, "transactions", lot_id)["lots"] == {lot_id: amount}
    assert lot(clocked, paid_old)["costCents"] == 499 and lot(clocked, paid_old)["currency"] == "usd"
    assert open_lots(clocked, uid) == {k: v[1] for k, v in expected.items()}
    clean_audit(clocked)

    clock.advance(60)
    assert spend(clocked, uid, 15, "s1")["lots"] == {promo_soon: -10, grant_soon: -5}
    assert spend(clocked, uid, 15, "s2")["lots"] == {grant_soon: -5, promo_later: -10}
    assert spend(clocked, uid, 30, "s3")["lots"] == {never: -10, paid_old: -20}
    assert spend(clocked, uid, 60, "s4")["lots"] == {paid_old: -30, paid_new: -30}
    assert open_lots(clocked, uid) == {paid_new: 20}
    assert lot_docs(clocked, uid) == {never: 0, paid_old: 0, paid_new: 20, promo_later: 0, promo_soon: 0,
                                      grant_soon: 0}
    assert lot(clocked, promo_soon)["open"] is False
    assert doc(clocked, "users", uid)["tokenBalance"] == 20
    clean_audit(clocked)


# --- 2. expiry with a moved clock -----------------------------------------------------------------

def test_a_promo_grant_expires_once_however_often_expiry_runs(clocked, clock, deps, settings, celery_producer):
    from web.app import create_app

    uid, t0 = "promoted", int(clock())
    client = create_app(clocked, CeleryEventQueue(celery_producer)).test_client()
    resp = client.post("/api/tokens/grant", headers=SERVICE, json={
        "userId": uid, "amount": 30, "reason": "welcome promo", "idempotencyKey": "promo-1", "createAccount": True,
        "source": "promo", "expiresAt": t0 + 100})
    assert resp.status_code == 200, resp.json
    promo = resp.json["entryId"]
    grant(clocked, uid, 50, "paid-like")
    clock.advance(1)
    assert spend(clocked, uid, 10, "s1")["lots"] == {promo: -10}
    seen = client.get("/api/tokens/balance", headers=bearer(uid, PROJECT)).json
    assert (seen["available"], seen["expiring"]) == (70, [{"amount": 20, "expiresAt": t0 + 100}])

    clock.advance(t0 + 100 - clock())  # the promo's expiry: not available any more, before any job ran
    assert accounts.balance(clocked, uid)["available"] == 50
    with pytest.raises(InsufficientFunds) as refused:
        spend(clocked, uid, 51, "s2")
    assert refused.value.available == 50
    assert expiry_entries(clocked, uid) == []

    first = expiry.run(clocked)
    assert (first["accounts"], first["tokensExpired"]) == (1, 20)
    [entry] = expiry_entries(clocked, uid)
    assert (entry["amount"], entry["lotId"], entry["source"], entry["lots"]) == (-20, promo, "promo", {promo: -20})
    user = doc(clocked, "users", uid)
    assert (user["tokenBalance"], user["totalTokensExpired"], user["totalTokensEarned"]) == (50, 20, 80)
    found = lot(clocked, promo)
    assert (found["remaining"], found["expired"], found["open"]) == (0, 20, False)

    assert expiry.run(clocked)["tokensExpired"] == 0  # run twice: one expiry entry
    clock.advance(3600)
    assert expiry.run(clocked)["accounts"] == 0  # nothing is due any more
    assert len(expiry_entries(clocked, uid)) == 1
    clean_audit(clocked)

    # five passes at once, from two processes' batchers: still one entry per lot
    other = dataclasses.replace(bootstrap(settings, configure_logs=False), clock=clock)
    grant(clocked, uid, 40, "promo-2", source="promo", expires_at=int(clock()) + 50)
    clock.advance(50)
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda i: expiry.run(clocked if i % 2 else other), range(5)))
    assert sum(r["tokensExpired"] for r in results) == 40, results
    assert sorted(e["amount"] for e in expiry_entries(clocked, uid)) == [-40, -20]
    assert doc(clocked, "users", uid)["tokenBalance"] == 50
    clean_audit(clocked)


def test_expiry_keeps_what_an_open_hold_needs_and_takes_it_when_the_hold_ends(clocked, clock):
    uid, t0 = "heldlot", int(clock())
    grant(clocked, uid, 100, "promo", source="promo", expires_at=t0 + 60)
    grant(clocked, uid, 30, "paid-like")
    promo = grant_id(uid, "promo")
    placed = holds.place(clocked, uid, 120, "h", 600)
    assert placed["available"] == 10
    clock.advance(61)
    assert expiry.run(clocked)["tokensExpired"] == 10  # only what the hold does not need
    assert lot(clocked, promo)["remaining"] == 90 and accounts.balance(clocked, uid)["available"] == 0
    clean_audit(clocked)
    captured = holds.capture(clocked, uid, placed["holdId"], 50, "c")
    assert captured["balance"] == 70
    assert doc(clocked, "transactions", captured["entryId"])["lots"] == {promo: -50}  # the held, expired lot
    assert expiry.run(clocked)["tokensExpired"] == 40  # the hold ended: the rest of the lot goes
    assert sorted(e["amount"] for e in expiry_entries(clocked, uid)) == [-40, -10]
    assert expiry.run(clocked)["tokensExpired"] == 0
    assert open_lots(clocked, uid) == {grant_id(uid, "paid-like"): 30}
    assert doc(clocked, "users", uid)["tokenBalance"] == 30
    clean_audit(clocked)


# --- 3. the plan's rollover cap ----------------------------------------------------------------------

def plan_invoice_paid(uid: str, period_start: int, period_end: int) -> dict:
    """invoice.paid of the catalog's monthly plan (600 tokens, rollover cap 300) for one period."""
    inv = copy.deepcopy(events._fixture("invoice"))
    invoice_id, pi = events.new_id("in"), events.new_id("pi")
    inv["lines"]["data"][0]["period"] = {"start": period_start, "end": period_end}
    inv.update({"id": invoice_id, "status": "paid", "amount_due": PLAN_PRICE, "amount_paid": PLAN_PRICE,
                "amount_remaining": 0, "currency": "usd", "billing_reason": "subscription_cycle",
                "subscription": None,
                "parent": {"type": "subscription_details", "quote_details": None,
                           "subscription_details": {"subscription": f"sub_{uid}",
                                                    "metadata": {"userId": uid, "planId": "monthly"}}},
                "payments": {"object": "list", "has_more": False, "url": f"/v1/invoice_payments?invoice={invoice_id}",
                             "data": [{"object": "invoice_payment", "id": events.new_id("inpay"),
                                       "invoice": invoice_id, "amount_paid": PLAN_PRICE,
                                       "amount_requested": PLAN_PRICE, "currency": "usd", "is_default": True,
                                       "livemode": False, "status": "paid",
                                       "payment": {"type": "payment_intent", "payment_intent": pi}}]}})
    return events.event(inv, "invoice.paid")


def test_a_plan_allowance_expires_above_its_rollover_cap_at_the_period_end(clocked, clock):
    uid, t0 = "planner", int(clock())
    first = plan_invoice_paid(uid, t0, t0 + 30 * DAY)
    assert process_stripe_event(clocked, json.dumps(first)).status == "credited"
    p1 = f"subscription_{first['data']['object']['id']}"
    found = lot(clocked, p1)
    assert (found["source"], found["amount"], found["expiresAt"], found["rolloverCap"], found["planId"]) == (
        "plan", 600, t0 + 30 * DAY, 300, "monthly")
    assert spend(clocked, uid, 100, "s1")["lots"] == {p1: -100}

    clock.advance(30 * DAY)
    assert expiry.run(clocked)["tokensExpired"] == 200  # 500 left, the cap keeps 300
    found = lot(clocked, p1)
    assert (found["remaining"], found["expired"], found["rolledOver"], found["expiresAt"], found["open"]) == (
        300, 200, True, None, True)
    assert [e["amount"] for e in expiry_entries(clocked, uid)] == [-200]
    assert expiry.run(clocked)["tokensExpired"] == 0
    clean_audit(clocked)

    clock.advance(60)
    second = plan_invoice_paid(uid, t0 + 30 * DAY, t0 + 60 * DAY)
    assert process_stripe_event(clocked, json.dumps(second)).status == "credited"
    p2 = f"subscription_{second['data']['object']['id']}"
    assert spend(clocked, uid, 100, "s2")["lots"] == {p2: -100}  # the expiring lot before the rolled-over one
    clock.advance(30 * DAY)
    assert expiry.run(clocked)["tokensExpired"] == 500  # the cap is used by what already rolled over
    assert open_lots(clocked, uid) == {p1: 300}
    assert (lot(clocked, p2)["remaining"], lot(clocked, p2)["rolledOver"]) == (0, False)
    user = doc(clocked, "users", uid)
    assert (user["tokenBalance"], user["totalTokensExpired"], user["totalTokensPurchased"]) == (300, 700, 1200)
    assert expiry.run(clocked)["tokensExpired"] == 0 and len(expiry_entries(clocked, uid)) == 2
    clean_audit(clocked)


# --- 4. refunds take from the bought lot ------------------------------------------------------------

def test_a_refund_takes_from_the_payments_lot_first_then_the_rest_then_debt(web_client, deps, worker, secret):
    uid = "refundlots"
    grant(deps, uid, 40, "gift")
    grant(deps, uid, 50, "promo", source="promo", expires_at=int(time.time()) + DAY)
    session = buy(web_client, deps, secret, uid, "basic")  # 200 tokens for 1499, credited by the worker
    bought = f"purchase_{session['id']}"
    found = lot(deps, bought)
    assert (found["source"], found["amount"], found["costCents"], found["currency"], found["paymentId"]) == (
        "purchase", 200, 1499, "usd", session["id"])
    gift, promo = grant_id(uid, "gift"), grant_id(uid, "promo")
    assert spend(deps, uid, 100, "s")["lots"] == {promo: -50, gift: -40, bought: -10}

    half = deliver(web_client, charge_refunded(session, 750), secret)  # floor(200 * 750 / 1499) = 100
    processed(deps, half)
    [refund] = docs(deps, "transactions", userId=uid, type="refund")
    assert (refund["amount"], refund["lots"]) == (-100, {bought: -100})
    assert lot(deps, bought)["remaining"] == 90
    grant(deps, uid, 5, "late-gift")  # another lot the full refund will also reach
    late = grant_id(uid, "late-gift")

    processed(deps, deliver(web_client, charge_refunded(session, 1499), secret))
    second = [e for e in docs(deps, "transactions", userId=uid, type="refund") if e["_id"] != refund["_id"]]
    assert [(e["amount"], e["lots"]) for e in second] == [(-100, {bought: -90, late: -5})]  # and 5 is debt
    user = doc(deps, "users", uid)
    assert (user["tokenBalance"], user["debt"], user["lots"]) == (-5, 5, {})
    clean_audit(deps)

    repaid = grant(deps, uid, 30, "repay")
    assert repaid.balance == 25
    assert doc(deps, "transactions", repaid.entry_id)["lots"] == {repaid.entry_id: 25}
    assert open_lots(deps, uid) == {repaid.entry_id: 25}
    assert lot(deps, repaid.entry_id)["amount"] == 30
    clean_audit(deps)


# --- 5. the migration ---------------------------------------------------------------------------------

def at(days_ago: float) -> datetime:
    return datetime.fromtimestamp(time.time() - days_ago * DAY, tz=timezone.utc)


def write_old_account(deps, uid: str) -> dict:
    """A users document and ledger entries as written before lots existed (no lots, no holds)."""
    db = deps.store.db
    session, invoice = f"cs_old_{uid}", f"in_old_{uid}"
    entries = [
        (f"purchase_{session}", {"type": "purchase", "amount": 200, "checkoutSessionId": session,
                                 "packageId": "basic", "amountPaid": 1499, "currency": "usd"}, 5),
        (f"grant_old_{uid}", {"type": "grant", "amount": 50, "reason": "welcome"}, 4),
        (f"spend_old1_{uid}", {"type": "spend", "amount": -120, "reason": "sword"}, 3),
        (f"subscription_{invoice}", {"type": "subscription_allowance", "amount": 600, "invoiceId": invoice,
                                     "planId": "monthly", "amountPaid": PLAN_PRICE, "currency": "usd"}, 2),
        (f"spend_old2_{uid}", {"type": "spend", "amount": -500, "reason": "armour"}, 1),
    ]
    running = 0
    for entry_id, fields, days in entries:
        running += fields["amount"]
        db.collection("transactions").document(entry_id).set(
            {**fields, "userId": uid, "balanceAfter": running, "createdAt": at(days)})
    db.collection("purchases").document(session).set(
        {"userId": uid, "status": "fulfilled", "packageId": "basic", "tokens": 200, "amountPaid": 1499,
         "currency": "usd", "ledgerEntryId": f"purchase_{session}", "fulfilledAt": at(5)})
    db.collection("users").document(uid).set(
        {"tokenBalance": running, "totalTokensPurchased": 800, "totalTokensEarned": 50, "totalTokensSpent": 620,
         "debt": 0, "frozenBy": {}, "displayName": "Old Timer"})
    return {"purchase": f"purchase_{session}", "grant": f"grant_old_{uid}", "plan": f"subscription_{invoice}",
            "balance": running}


def migrate_cli(redis_host, firestore_emulator, stripe_sandbox) -> dict:
    """``tokenbank lots migrate`` as an operator runs it: its own process, the same stores."""
    env = integration_env(redis_host, firestore_emulator.address, stripe_sandbox.address)
    done = subprocess.run([sys.executable, "-m", "admin.cli", "lots", "migrate", "--operator", "lots-test"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def everything(deps) -> dict:
    db = deps.store.db
    return {name: sorted((s.id, json.dumps(s.to_dict(), sort_keys=True, default=str))
                         for s in db.collection(name).stream()) for name in ("users", "transactions", "lots")}


def test_the_lots_migration_gives_old_accounts_their_lots_once(deps, redis_host, firestore_emulator, stripe_sandbox):
    old = write_old_account(deps, "oldtimer")
    assert old["balance"] == 230
    halfway = write_old_account(deps, "halfway")
    late_gift = grant(deps, "halfway", 25, "after-lots")  # a credit made after lots existed has its lot
    modern = grant(deps, "modern", 70, "new")  # an account born with lots
    assert audit(deps, ["oldtimer", "modern"]).ok  # an account from before lots is checked without lots

    first = migrate_cli(redis_host, firestore_emulator, stripe_sandbox)
    assert first == {"accounts": 3, "lotsCreated": 6, "tokensAssigned": 460}, first
    for uid in ("oldtimer", "halfway"):
        # spends took the oldest first, so what is left (230) is in the newest credits
        got = {d["_id"]: (d["source"], d["amount"], d["remaining"], d["migrated"], d["migratedConsumed"],
                          d["expiresAt"]) for d in docs(deps, "lots", userId=uid) if d.get("migrated")}
        assert got == {old["plan"].replace("oldtimer", uid): ("plan", 600, 230, True, 370, None),
                       old["grant"].replace("oldtimer", uid): ("grant", 50, 0, True, 50, None),
                       old["purchase"].replace("oldtimer", uid): ("purchase", 200, 0, True, 200, None)}, got
    assert open_lots(deps, "oldtimer") == {old["plan"]: 230}
    assert open_lots(deps, "halfway") == {old["plan"].replace("oldtimer", "halfway"): 230, late_gift.entry_id: 25}
    assert lot(deps, old["purchase"])["paymentId"] == "cs_old_oldtimer"
    assert lot(deps, old["purchase"])["costCents"] == 1499
    assert lot(deps, old["plan"])["planId"] == "monthly"
    assert doc(deps, "users", "oldtimer")["displayName"] == "Old Timer"  # fields it does not own stay
    assert open_lots(deps, "modern") == {modern.entry_id: 70}
    clean_audit(deps)
    after_first = everything(deps)

    second = migrate_cli(redis_host, firestore_emulator, stripe_sandbox)
    assert second == {"accounts": 3, "lotsCreated": 0, "tokensAssigned": 0}, second
    assert everything(deps) == after_first  # rerunnable: nothing written the second time
    logged = docs(deps, "ops_log", action="migrate_lots")
    assert len(logged) == 2 and {entry["operator"] for entry in logged} == {"lots-test"}

    # a migrated account works like any other: spends take from its lots, the audit stays clean
    assert spend(deps, "oldtimer", 30, "after")["lots"] == {old["plan"]: -30}
    assert spend(deps, "halfway", 30, "after")["lots"] == {  # granted before paid, at equal (no) expiry
        late_gift.entry_id: -25, old["plan"].replace("oldtimer", "halfway"): -5}
    clean_audit(deps)
