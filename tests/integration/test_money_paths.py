"""Money paths of issue 8 §2 on the real stack, proven only through what can be observed.

Every event is signed with the configured secret and POSTed to /api/stripe/webhook through the
web tier, processed by the real Celery worker, and checked in the Firestore emulator:
``users/{uid}`` (tokenBalance, debt, frozenBy, subscription), the ledger in ``transactions``
(type, amount, userId), ``stripe_events/{event id}`` (status), ``security_alerts``, and HTTP
answers. PaymentIntents the worker may have to ask Stripe about are created in the local
Stripe sandbox with the real ``stripe`` SDK and their real ids are used in the events.

What this file proves:
1. A plan (subscription) invoice is a purchase like a package: its refunds debit in proportion
   (once per cumulative amount), its disputes freeze spending, a lost one reverses what is left.
2. Credits always land, whatever the balance: a grant and a plan allowance repay a debt.
3. A refund or a lost dispute that arrives before its purchase is credited waits for it and
   never runs out of a retry budget (never dead-lettered), then takes the tokens back.
4. A charge that is not tokenbank's (no tokenbank metadata on its PaymentIntent, or a
   PaymentIntent Stripe does not know) is recorded ``ignored`` at once: no alert, no dead letter.
6. The subscription mirror keeps the user's current subscription: a late ``deleted`` for an
   older one does not replace it, and a failed payment of the current one marks it ``past_due``.

Stripe facts respected (API 2026-10-28): a package purchase's metadata {userId, packageId,
tokens} is on the session and its PaymentIntent, never on the Charge; a plan invoice's
PaymentIntent has no metadata and the invoice names it in ``payments.data[].payment``;
``charge.refunded`` carries the cumulative ``amount_refunded``.
"""
from __future__ import annotations

import copy
import time
from types import SimpleNamespace

import pytest
import stripe

from core.config import DEV_SERVICE_KEY
from tests.integration.conftest import PROJECT, doc, docs, eventually
from devstack import stripe_events as events
from tests.support.payments import package_payment, paid_payment_intent, plan_payment
from tests.support.tokens import bearer

SERVICE = {"X-Service-Key": DEV_SERVICE_KEY}
FINAL_STATUSES = ("processed", "ignored", "rejected", "dead_lettered")
PLAN_TOKENS, PLAN_PRICE = 600, 2499  # catalog plan "monthly"
RETRY_BUDGET_OUTLIVED = 16.0  # seconds; the test worker dead-letters a retrying event within ~10 s


# --- Stripe objects -------------------------------------------------------------------------

def package_completed(uid: str, package: str, pi) -> dict:
    """checkout.session.completed (paid) for a package bought with ``pi``."""
    return events.event(events.checkout_session(uid, package, payment_intent=pi.id))


def plan_invoice(uid: str, sub_id: str, pi=None, *, amount_paid: int = PLAN_PRICE,
                 billing_reason: str = "subscription_cycle") -> dict:
    """A plan invoice as Stripe sends it; paid ones name their PaymentIntent in ``payments``."""
    inv = copy.deepcopy(events._fixture("invoice"))
    now = int(time.time())
    invoice_id = events.new_id("in")
    inv["lines"]["data"][0]["period"] = {"start": now, "end": now + 30 * 86400}
    inv.update({"id": invoice_id, "status": "paid" if amount_paid else "open", "amount_due": PLAN_PRICE,
                "amount_paid": amount_paid, "amount_remaining": PLAN_PRICE - amount_paid, "currency": "usd",
                "billing_reason": billing_reason, "subscription": None,
                "parent": {"type": "subscription_details", "quote_details": None,
                           "subscription_details": {"subscription": sub_id,
                                                    "metadata": {"userId": uid, "planId": "monthly"}}}})
    if pi is not None:
        inv["payments"] = {"object": "list", "has_more": False, "url": f"/v1/invoice_payments?invoice={invoice_id}",
                           "data": [{"object": "invoice_payment", "id": events.new_id("inpay"), "invoice": invoice_id,
                                     "amount_paid": amount_paid, "amount_requested": PLAN_PRICE, "currency": "usd",
                                     "is_default": True, "livemode": False, "status": "paid",
                                     "payment": {"type": "payment_intent", "payment_intent": pi.id}}]}
    return inv


def charge_refunded(pi, amount_refunded: int) -> dict:
    """charge.refunded for ``pi``'s charge: cumulative amount_refunded, no metadata (as Stripe)."""
    charge = copy.deepcopy(events._fixture("charge"))
    charge.update(id=pi.latest_charge, payment_intent=pi.id, amount=pi.amount, amount_captured=pi.amount,
                  captured=True, paid=True, status="succeeded", currency="usd", metadata={},
                  amount_refunded=amount_refunded, refunded=amount_refunded >= pi.amount)
    return events.event(charge, "charge.refunded")


def dispute_event(pi, event_type: str, status: str, dispute_id: str) -> dict:
    dispute = copy.deepcopy(events._fixture("dispute"))
    dispute.update(id=dispute_id, payment_intent=pi.id, charge=pi.latest_charge, amount=pi.amount, currency="usd",
                   status=status, reason="fraudulent")
    return events.event(dispute, event_type)


def subscription_event(uid: str, sub_id: str, event_type: str, *, sub_created: int, event_created: int,
                       status: str = "active") -> dict:
    sub = copy.deepcopy(events._fixture("subscription"))
    sub["items"]["data"][0]["current_period_end"] = sub_created + 30 * 86400
    sub.update({"id": sub_id, "status": status, "created": sub_created, "cancel_at_period_end": False,
                "metadata": {"userId": uid, "planId": "monthly"}})
    return at(events.event(sub, event_type), event_created)


def at(evt: dict, created: int) -> dict:
    evt["created"] = created
    return evt


def fresh_copy(evt: dict) -> dict:
    """The same object in a new event (another event id for the same state)."""
    return events.event(copy.deepcopy(evt["data"]["object"]), evt["type"])


# --- the stack --------------------------------------------------------------------------------

def deliver(web_client, secret, evt: dict) -> dict:
    body, headers = events.signed(evt, secret)
    resp = web_client.post("/api/stripe/webhook", data=body, headers=headers)
    assert resp.status_code == 200, resp.data
    return evt


def wait_for_event(deps, event_id: str, statuses, timeout: float = 30.0) -> dict:
    """Wait until stripe_events/{event_id} has a final status; it must be one of ``statuses``."""
    eventually(lambda: (doc(deps, "stripe_events", event_id) or {}).get("status") in FINAL_STATUSES,
               timeout=timeout, what=f"event {event_id} to reach a final status")
    record = doc(deps, "stripe_events", event_id)
    assert record["status"] in statuses, (
        f"event {event_id} ({record.get('type')}) ended {record['status']!r}, expected one of {sorted(statuses)}; "
        f"error={record.get('error')!r} outcome={record.get('outcome')!r}")
    return record


def never_dead_lettered(deps, event_ids, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for event_id in event_ids:
            record = doc(deps, "stripe_events", event_id) or {}
            assert record.get("status") != "dead_lettered", (
                f"event {event_id} was dead-lettered while waiting for its purchase: {record.get('error')!r}")
        time.sleep(0.25)


def holds_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), what
        time.sleep(0.1)


def user(deps, uid: str) -> dict:
    return doc(deps, "users", uid) or {}


def ledger(deps, uid: str) -> list[tuple[str, int]]:
    """The user's ledger as sorted (type, amount) pairs."""
    return sorted((e["type"], e["amount"]) for e in docs(deps, "transactions", userId=uid))


def spend(web_client, uid: str, amount: int):
    return web_client.post("/api/tokens/spend", headers=bearer(uid, PROJECT),
                           json={"amount": amount, "reason": "sword", "idempotencyKey": f"s-{time.time_ns()}"})


def grant(web_client, uid: str, amount: int):
    return web_client.post("/api/tokens/grant", headers=SERVICE,
                           json={"userId": uid, "amount": amount, "reason": "support gesture",
                                 "idempotencyKey": f"g-{time.time_ns()}"})


def credit_plan(web_client, deps, secret, uid: str, pi) -> dict:
    paid = deliver(web_client, secret, events.event(plan_invoice(uid, f"sub_{uid}", pi), "invoice.paid"))
    wait_for_event(deps, paid["id"], {"processed"})
    assert user(deps, uid)["tokenBalance"] == PLAN_TOKENS
    return paid


# --- 1. plan invoices are purchases too ---------------------------------------------------------

def test_a_plan_invoice_refund_debits_in_proportion_once_per_cumulative_amount(web_client, deps, worker, secret,
                                                                               stripe_api):
    pi = plan_payment(stripe_api)
    credit_plan(web_client, deps, secret, "planrefund", pi)

    partial = deliver(web_client, secret, charge_refunded(pi, 1000))
    wait_for_event(deps, partial["id"], {"processed"})
    assert user(deps, "planrefund")["tokenBalance"] == 360  # 600 - floor(600 * 1000 / 2499)
    assert ledger(deps, "planrefund") == [("refund", -240), ("subscription_allowance", 600)]

    full = deliver(web_client, secret, charge_refunded(pi, PLAN_PRICE))
    wait_for_event(deps, full["id"], {"processed"})
    assert user(deps, "planrefund")["tokenBalance"] == 0
    assert ledger(deps, "planrefund") == [("refund", -360), ("refund", -240), ("subscription_allowance", 600)]

    # Redeliveries: the same events again, and the same charge states under new event ids.
    for evt in (partial, full):
        deliver(web_client, secret, evt)
    for evt in (fresh_copy(partial), fresh_copy(full)):
        wait_for_event(deps, deliver(web_client, secret, evt)["id"], {"processed"})
    holds_for(lambda: user(deps, "planrefund")["tokenBalance"] == 0
              and ledger(deps, "planrefund") == [("refund", -360), ("refund", -240), ("subscription_allowance", 600)],
              2.0, "a redelivered refund changed the balance or the ledger")
    assert docs(deps, "stripe_events", status="dead_lettered") == []


@pytest.mark.parametrize("outcome", ["lost", "won"])
def test_a_plan_invoice_dispute_freezes_spending_until_closed(web_client, deps, worker, secret, stripe_api, outcome):
    uid, dispute_id = f"plandispute-{outcome}", events.new_id("dp")
    pi = plan_payment(stripe_api)
    credit_plan(web_client, deps, secret, uid, pi)

    opened = deliver(web_client, secret, dispute_event(pi, "charge.dispute.created", "needs_response", dispute_id))
    wait_for_event(deps, opened["id"], {"processed"})
    assert dispute_id in (user(deps, uid).get("frozenBy") or {})
    assert spend(web_client, uid, 1).status_code == 423

    closed = deliver(web_client, secret, dispute_event(pi, "charge.dispute.closed", outcome, dispute_id))
    wait_for_event(deps, closed["id"], {"processed"})
    assert not user(deps, uid).get("frozenBy")
    if outcome == "lost":
        assert ledger(deps, uid) == [("dispute_reversal", -600), ("subscription_allowance", 600)]
        assert user(deps, uid)["tokenBalance"] == 0
    else:
        assert ledger(deps, uid) == [("subscription_allowance", 600)]
        assert spend(web_client, uid, 1).status_code == 200
    assert docs(deps, "stripe_events", status="dead_lettered") == []


# --- 2. credits always land -----------------------------------------------------------------------

def test_a_grant_and_a_plan_allowance_land_on_an_account_in_debt(web_client, deps, worker, secret, stripe_api):
    uid = "indebted"
    premium = package_payment(stripe_api, uid, "premium")  # 1000 tokens for 4999
    wait_for_event(deps, deliver(web_client, secret, package_completed(uid, "premium", premium))["id"], {"processed"})
    assert spend(web_client, uid, 1000).status_code == 200
    wait_for_event(deps, deliver(web_client, secret, charge_refunded(premium, 4999))["id"], {"processed"})
    assert (user(deps, uid)["tokenBalance"], user(deps, uid)["debt"]) == (-1000, 1000)

    granted = grant(web_client, uid, 10)
    assert granted.status_code == 200, granted.json
    assert granted.json["balance"] == -990
    assert (user(deps, uid)["tokenBalance"], user(deps, uid)["debt"]) == (-990, 990)

    paid = deliver(web_client, secret, events.event(plan_invoice(uid, f"sub_{uid}", plan_payment(stripe_api)),
                                                    "invoice.paid"))
    wait_for_event(deps, paid["id"], {"processed"})
    assert ("subscription_allowance", 600) in ledger(deps, uid)
    assert (user(deps, uid)["tokenBalance"], user(deps, uid)["debt"]) == (-390, 390)
    assert spend(web_client, uid, 1).status_code == 402


# --- 3. reversals never race a retry budget ---------------------------------------------------------

def test_a_refund_or_lost_dispute_before_its_credit_waits_for_it_and_is_never_dead_lettered(
        web_client, deps, worker, secret, stripe_api):
    refund_pi = package_payment(stripe_api, "early-refund", "starter")  # 50 tokens for 499
    dispute_pi = package_payment(stripe_api, "early-dispute", "starter")
    dispute_id = events.new_id("dp")
    early = [
        deliver(web_client, secret, charge_refunded(refund_pi, 499)),
        deliver(web_client, secret, dispute_event(dispute_pi, "charge.dispute.created", "needs_response", dispute_id)),
        deliver(web_client, secret, dispute_event(dispute_pi, "charge.dispute.closed", "lost", dispute_id)),
    ]
    never_dead_lettered(deps, [e["id"] for e in early], RETRY_BUDGET_OUTLIVED)

    credits = [deliver(web_client, secret, package_completed("early-refund", "starter", refund_pi)),
               deliver(web_client, secret, package_completed("early-dispute", "starter", dispute_pi))]
    for evt in credits:
        wait_for_event(deps, evt["id"], {"processed"})
    eventually(lambda: ledger(deps, "early-refund") == [("purchase", 50), ("refund", -50)], timeout=30,
               what="the early refund applied after the credit")
    eventually(lambda: ledger(deps, "early-dispute") == [("dispute_reversal", -50), ("purchase", 50)], timeout=30,
               what="the early lost dispute applied after the credit")
    for evt in early:
        wait_for_event(deps, evt["id"], {"processed"})
    assert user(deps, "early-refund")["tokenBalance"] == 0
    assert user(deps, "early-dispute")["tokenBalance"] == 0
    assert not user(deps, "early-dispute").get("frozenBy")
    assert docs(deps, "stripe_events", status="dead_lettered") == []


# --- 4. charges that are not tokenbank's --------------------------------------------------------------

def test_refunds_and_disputes_of_charges_that_are_not_tokenbanks_are_ignored(web_client, deps, worker, secret,
                                                                             stripe_api):
    foreign = paid_payment_intent(stripe_api, 1234)  # another product's payment: no tokenbank metadata
    unknown = SimpleNamespace(id=events.new_id("pi"), latest_charge=events.new_id("ch"), amount=1234)  # Stripe: 404
    with pytest.raises(stripe.InvalidRequestError):
        stripe_api.v1.payment_intents.retrieve(unknown.id)
    delivered = [
        deliver(web_client, secret, charge_refunded(foreign, 1234)),
        deliver(web_client, secret, dispute_event(foreign, "charge.dispute.created", "needs_response",
                                                  events.new_id("dp"))),
        deliver(web_client, secret, charge_refunded(unknown, 1234)),
        deliver(web_client, secret, dispute_event(unknown, "charge.dispute.created", "needs_response",
                                                  events.new_id("dp"))),
    ]
    started = time.monotonic()
    for evt in delivered:
        wait_for_event(deps, evt["id"], {"ignored"})
    assert time.monotonic() - started < 8, "ignoring a foreign charge should take one look at Stripe, not retries"
    assert docs(deps, "security_alerts") == []
    assert docs(deps, "stripe_events", status="dead_lettered") == []
    assert docs(deps, "users") == [] and docs(deps, "transactions") == []


# --- 6. the subscription mirror keeps the current subscription -------------------------------------------

def test_a_late_deletion_of_an_older_subscription_does_not_replace_the_current_one(web_client, deps, worker, secret):
    uid, t0 = "switcher", int(time.time())
    created_a = subscription_event(uid, "sub_switch_a", "customer.subscription.created",
                                   sub_created=t0 - 86400, event_created=t0 - 86400)
    created_b = subscription_event(uid, "sub_switch_b", "customer.subscription.created",
                                   sub_created=t0 - 60, event_created=t0 - 60)
    deleted_a = subscription_event(uid, "sub_switch_a", "customer.subscription.deleted",
                                   sub_created=t0 - 86400, event_created=t0, status="canceled")
    for evt in (created_a, created_b, deleted_a):
        wait_for_event(deps, deliver(web_client, secret, evt)["id"], {"processed"})
    stored = user(deps, uid).get("subscription") or {}
    assert (stored.get("id"), stored.get("status")) == ("sub_switch_b", "active")

    failed = at(events.event(plan_invoice(uid, "sub_switch_b", amount_paid=0), "invoice.payment_failed"), t0 + 10)
    wait_for_event(deps, deliver(web_client, secret, failed)["id"], {"processed"})
    stored = user(deps, uid).get("subscription") or {}
    assert (stored.get("id"), stored.get("status")) == ("sub_switch_b", "past_due")
