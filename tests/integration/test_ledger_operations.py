"""Spend, grant, refund and dispute on the real stack: web tier, worker, Redis, Firestore."""
from __future__ import annotations

import copy
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.config import DEV_SERVICE_KEY
from tests.integration.conftest import PROJECT, doc, docs, eventually
from devstack import stripe_events as events
from tests.support.payments import package_payment
from tests.support.tokens import bearer

SERVICE = {"X-Service-Key": DEV_SERVICE_KEY}


def deliver(web_client, evt, secret):
    body, headers = events.signed(evt, secret)
    resp = web_client.post("/api/stripe/webhook", data=body, headers=headers)
    assert resp.status_code == 200, resp.json
    return evt


def processed(deps, evt, timeout=20):
    eventually(lambda: (doc(deps, "stripe_events", evt["id"]) or {}).get("status") == "processed", timeout=timeout,
               what=f"{evt['type']} processed")
    return doc(deps, "stripe_events", evt["id"])


def buy(web_client, deps, secret, uid, package="basic"):
    session = events.checkout_session(uid, package)
    processed(deps, deliver(web_client, events.event(session), secret))
    return session


def grant(web_client, uid, amount, key=None, **extra):
    return web_client.post("/api/tokens/grant", headers=SERVICE, json={
        "userId": uid, "amount": amount, "reason": "welcome bonus", "idempotencyKey": key or f"g-{time.time_ns()}",
        **extra})


def spend(web_client, uid, amount, key=None, reason="sword", headers=None):
    return web_client.post("/api/tokens/spend", headers=headers or bearer(uid, PROJECT), json={
        "amount": amount, "reason": reason, "idempotencyKey": key or f"s-{time.time_ns()}"})


def balance(deps, uid):
    return (doc(deps, "users", uid) or {}).get("tokenBalance", 0)


def charge_refunded(session, amount_refunded):
    charge = copy.deepcopy(events._fixture("charge"))
    charge.update(id=f"ch_{session['id'][-10:]}", payment_intent=session["payment_intent"],
                  amount=session["amount_total"], amount_refunded=amount_refunded,
                  refunded=amount_refunded >= session["amount_total"])
    return events.event(charge, "charge.refunded")


def dispute_event(session, event_type, status, dispute_id):
    dispute = copy.deepcopy(events._fixture("dispute"))
    dispute.update(id=dispute_id, payment_intent=session["payment_intent"], charge=f"ch_{session['id'][-10:]}",
                   amount=session["amount_total"], status=status)
    return events.event(dispute, event_type)


# --- spend ----------------------------------------------------------------------------------

def test_spend_debits_once_per_key_and_a_reused_key_with_another_body_is_409(web_client, deps):
    assert grant(web_client, "sp", 100, createAccount=True).status_code == 200
    first = spend(web_client, "sp", 30, key="k1")
    assert first.status_code == 200 and first.json["balance"] == 70 and first.json["replayed"] is False
    again = spend(web_client, "sp", 30, key="k1")
    assert again.status_code == 200 and again.json == first.json | {"replayed": True}
    assert spend(web_client, "sp", 31, key="k1").status_code == 409
    assert spend(web_client, "sp", 30, key="k1", reason="shield").status_code == 409
    user = doc(deps, "users", "sp")
    assert user["tokenBalance"] == 70 and user["totalTokensSpent"] == 30 and user["totalTokensEarned"] == 100
    assert len(docs(deps, "transactions", userId="sp", type="spend")) == 1


def test_spend_beyond_the_balance_is_402_with_the_balance(web_client, deps):
    grant(web_client, "poor", 10, createAccount=True)
    resp = spend(web_client, "poor", 11)
    assert resp.status_code == 402 and resp.json["balance"] == 10
    assert spend(web_client, "nobody-yet", 1).json["balance"] == 0
    assert balance(deps, "poor") == 10


@pytest.mark.parametrize("amount", [0, -5, 1.5, "10", None, True, 10**9, [10]])
def test_bad_amounts_are_400_and_move_nothing(web_client, deps, amount):
    grant(web_client, "picky", 50, createAccount=True)
    resp = spend(web_client, "picky", amount)
    assert resp.status_code == 400 and resp.json["field"] == "amount"
    assert balance(deps, "picky") == 50


@pytest.mark.parametrize("body,field", [
    ({"amount": 5, "reason": "x"}, "idempotencyKey"),
    ({"amount": 5, "idempotencyKey": "k"}, "reason"),
    ({"amount": 5, "reason": "", "idempotencyKey": "k"}, "reason"),
    ({"amount": 5, "reason": "x" * 201, "idempotencyKey": "k"}, "reason"),
    ({"amount": 5, "reason": "x", "idempotencyKey": "a/b"}, "idempotencyKey"),
    ({"amount": 5, "reason": "x", "idempotencyKey": "k", "userId": "someone-else"}, "userId"),
    ({"amount": 5, "reason": "x", "idempotencyKey": "k", "balance": 9999}, None),
])
def test_bad_spend_bodies_are_400(web_client, body, field):
    resp = web_client.post("/api/tokens/spend", headers=bearer("u1", PROJECT), json=body)
    assert resp.status_code == 400, resp.json
    if field:
        assert resp.json["field"] == field


def test_spend_auth(web_client):
    body = {"amount": 1, "reason": "x", "idempotencyKey": "k"}
    assert web_client.post("/api/tokens/spend", json=body).status_code == 401
    assert web_client.post("/api/tokens/spend", json=body, headers={"X-Service-Key": "wrong"}).status_code == 401
    assert web_client.post("/api/tokens/spend", json=body, headers=SERVICE).status_code == 400  # needs userId


def test_a_trusted_backend_spends_for_a_user(web_client, deps):
    grant(web_client, "game", 40, createAccount=True)
    resp = web_client.post("/api/tokens/spend", headers=SERVICE,
                           json={"userId": "game", "amount": 15, "reason": "match entry", "idempotencyKey": "m1"})
    assert resp.status_code == 200 and resp.json["balance"] == 25
    [entry] = docs(deps, "transactions", userId="game", type="spend")
    assert entry["actor"] == "service" and entry["amount"] == -15 and entry["reason"] == "match entry"


def test_ten_concurrent_spends_of_30_from_100_exactly_three_succeed(web_client, deps):
    grant(web_client, "hotspend", 100, createAccount=True)
    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(lambda i: spend(web_client, "hotspend", 30, key=f"c{i}").status_code, range(10)))
    assert sorted(codes) == [200] * 3 + [402] * 7
    assert balance(deps, "hotspend") == 10
    assert len(docs(deps, "transactions", userId="hotspend", type="spend")) == 3


# --- grant ----------------------------------------------------------------------------------

def test_grants_are_for_trusted_callers_and_known_accounts(web_client, deps):
    user_try = web_client.post("/api/tokens/grant", headers=bearer("greedy", PROJECT),
                               json={"userId": "greedy", "amount": 5, "reason": "x", "idempotencyKey": "k"})
    assert user_try.status_code == 403
    assert grant(web_client, "ghost", 5).status_code == 404
    assert grant(web_client, "ghost", 5, createAccount="yes").status_code == 400
    ok = grant(web_client, "ghost", 5, key="bonus-1", createAccount=True)
    assert ok.status_code == 200 and ok.json["balance"] == 5
    assert grant(web_client, "ghost", 5, key="bonus-1").json["replayed"] is True
    assert doc(deps, "users", "ghost")["totalTokensEarned"] == 5
    for bad in (0, -1, 2.5, 10**7):
        assert grant(web_client, "ghost", bad).status_code == 400


# --- refunds ----------------------------------------------------------------------------------

def test_partial_then_full_refund_debits_in_proportion_once_each(web_client, deps, worker, secret):
    session = buy(web_client, deps, secret, "refundee", "basic")  # 200 tokens for 1499
    half = processed(deps, deliver(web_client, charge_refunded(session, 750), secret))
    assert half["outcome"] == "refunded" and balance(deps, "refundee") == 100  # floor(200*750/1499)
    deliver(web_client, charge_refunded(session, 750), secret)  # a redelivery (new event id, same amount)
    full = processed(deps, deliver(web_client, charge_refunded(session, 1499), secret))
    assert full["outcome"] == "refunded" and balance(deps, "refundee") == 0
    time.sleep(0.5)
    refunds = docs(deps, "transactions", userId="refundee", type="refund")
    assert sorted(e["amount"] for e in refunds) == [-100, -100]
    assert all(e["checkoutSessionId"] == session["id"] for e in refunds)
    user = doc(deps, "users", "refundee")
    assert user["totalTokensPurchased"] == 0 and user["debt"] == 0


def test_out_of_order_partial_refund_after_the_full_one_debits_nothing(web_client, deps, worker, secret):
    session = buy(web_client, deps, secret, "reorder", "starter")
    processed(deps, deliver(web_client, charge_refunded(session, 499), secret))
    late = processed(deps, deliver(web_client, charge_refunded(session, 200), secret))
    assert late["outcome"] == "refund_nothing_to_debit"
    assert balance(deps, "reorder") == 0
    assert len(docs(deps, "transactions", userId="reorder", type="refund")) == 1


def test_refund_of_spent_tokens_leaves_debt_blocks_spending_and_alerts(web_client, deps, worker, secret):
    session = buy(web_client, deps, secret, "spender", "starter")
    assert spend(web_client, "spender", 40).status_code == 200
    processed(deps, deliver(web_client, charge_refunded(session, 499), secret))
    user = doc(deps, "users", "spender")
    assert user["tokenBalance"] == -40 and user["debt"] == 40
    [alert] = docs(deps, "security_alerts", type="negative_balance")
    assert alert["userId"] == "spender" and alert["details"]["debt"] == 40
    assert spend(web_client, "spender", 1).status_code == 402
    buy(web_client, deps, secret, "spender", "starter")  # paying again clears the debt
    user = doc(deps, "users", "spender")
    assert user["tokenBalance"] == 10 and user["debt"] == 0
    assert spend(web_client, "spender", 10).status_code == 200


def test_a_refund_that_overtakes_its_credit_waits_for_it(web_client, deps, worker, secret, stripe_api):
    # The worker asks Stripe whose PaymentIntent this is (the credit has not told us yet).
    session = events.checkout_session("racer", "starter",
                                      payment_intent=package_payment(stripe_api, "racer", "starter").id)
    early = deliver(web_client, charge_refunded(session, 499), secret)
    time.sleep(0.3)  # parked meanwhile
    processed(deps, deliver(web_client, events.event(session), secret))
    processed(deps, early, timeout=30)
    assert balance(deps, "racer") == 0
    assert len(docs(deps, "transactions", userId="racer")) == 2


# --- disputes ---------------------------------------------------------------------------------

def test_a_dispute_freezes_spending_until_won(web_client, deps, worker, secret):
    session = buy(web_client, deps, secret, "disputed", "basic")
    processed(deps, deliver(web_client, dispute_event(session, "charge.dispute.created", "needs_response", "dp_1"),
                            secret))
    assert spend(web_client, "disputed", 1).status_code == 423
    [alert] = docs(deps, "security_alerts", type="dispute_opened")
    assert alert["userId"] == "disputed"
    processed(deps, deliver(web_client, dispute_event(session, "charge.dispute.closed", "won", "dp_1"), secret))
    assert spend(web_client, "disputed", 1).status_code == 200
    assert balance(deps, "disputed") == 199


def test_a_lost_dispute_reverses_the_remaining_tokens_then_unfreezes(web_client, deps, worker, secret):
    session = buy(web_client, deps, secret, "loser", "pro")  # 500 tokens for 2999
    processed(deps, deliver(web_client, charge_refunded(session, 600), secret))  # floor(500*600/2999) = 100
    processed(deps, deliver(web_client, dispute_event(session, "charge.dispute.created", "needs_response", "dp_2"),
                            secret))
    processed(deps, deliver(web_client, dispute_event(session, "charge.dispute.closed", "lost", "dp_2"), secret))
    assert balance(deps, "loser") == 0
    [reversal] = docs(deps, "transactions", userId="loser", type="dispute_reversal")
    assert reversal["amount"] == -400 and reversal["disputeId"] == "dp_2"
    assert not doc(deps, "users", "loser").get("frozenBy")
    # a redelivered 'lost' changes nothing
    processed(deps, deliver(web_client, dispute_event(session, "charge.dispute.closed", "lost", "dp_2"), secret))
    assert len(docs(deps, "transactions", userId="loser", type="dispute_reversal")) == 1


def test_a_late_dispute_created_after_it_closed_does_not_freeze(web_client, deps, worker, secret):
    session = buy(web_client, deps, secret, "late", "starter")
    processed(deps, deliver(web_client, dispute_event(session, "charge.dispute.closed", "won", "dp_3"), secret))
    processed(deps, deliver(web_client, dispute_event(session, "charge.dispute.created", "needs_response", "dp_3"),
                            secret))
    assert not doc(deps, "users", "late").get("frozenBy")
    assert spend(web_client, "late", 5).status_code == 200
