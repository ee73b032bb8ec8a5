"""A signed checkout.session.completed through the web tier, the broker and a real worker."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from tests.integration.conftest import doc, docs, eventually
from devstack import stripe_events as events


def post(web_client, evt, secret):
    body, headers = events.signed(evt, secret)
    return web_client.post("/api/stripe/webhook", data=body, headers=headers)


def balance(deps, uid):
    user = doc(deps, "users", uid)
    return user["tokenBalance"] if user else 0


def test_paid_checkout_is_credited_once_with_ledger_entry(web_client, deps, worker, secret):
    session = events.checkout_session("alice", "basic")
    evt = events.event(session)
    resp = post(web_client, evt, secret)
    assert resp.status_code == 200, resp.data
    assert resp.json == {"received": True, "id": evt["id"], "handled": True}

    eventually(lambda: balance(deps, "alice") == 200, what="credit")
    user = doc(deps, "users", "alice")
    assert user["totalTokensPurchased"] == 200 and user["totalTokensSpent"] == 0 and user["totalTokensEarned"] == 0
    entry = doc(deps, "transactions", f"purchase_{session['id']}")
    assert entry["type"] == "purchase" and entry["amount"] == 200 and entry["balanceAfter"] == 200
    assert entry["userId"] == "alice" and entry["stripeEventId"] == evt["id"]
    assert entry["checkoutSessionId"] == session["id"] and entry["paymentIntentId"] == session["payment_intent"]
    assert entry["amountPaid"] == 1499 and entry["currency"] == "usd" and entry["packageId"] == "basic"
    purchase = doc(deps, "purchases", session["id"])
    assert purchase["status"] == "fulfilled" and purchase["userId"] == "alice" and purchase["creditAttempts"] == 1
    eventually(lambda: (doc(deps, "stripe_events", evt["id"]) or {}).get("status") == "processed")
    assert doc(deps, "stripe_events", evt["id"])["outcome"] == "credited"


def test_same_event_three_times_at_once_credits_once(web_client, deps, worker, secret):
    session = events.checkout_session("bob", "starter")
    evt = events.event(session)
    with ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(lambda _: post(web_client, evt, secret).status_code, range(3)))
    assert codes == [200, 200, 200]
    eventually(lambda: balance(deps, "bob") == 50)
    eventually(lambda: len(docs(deps, "stripe_events")) == 1 and
               docs(deps, "stripe_events")[0].get("status") == "processed")
    assert len(docs(deps, "transactions", userId="bob")) == 1
    assert balance(deps, "bob") == 50


def test_two_event_ids_for_one_session_credit_once(web_client, deps, worker, secret):
    session = events.checkout_session("carol", "pro")
    first, second = events.event(session), events.event(session)
    assert post(web_client, first, secret).status_code == 200
    assert post(web_client, second, secret).status_code == 200
    eventually(lambda: all((doc(deps, "stripe_events", e["id"]) or {}).get("status") == "processed"
                           for e in (first, second)))
    outcomes = sorted(doc(deps, "stripe_events", e["id"])["outcome"] for e in (first, second))
    assert outcomes == ["already_fulfilled", "credited"]
    assert balance(deps, "carol") == 500
    assert len(docs(deps, "transactions", userId="carol")) == 1


def test_unpaid_completion_then_async_success_credits(web_client, deps, worker, secret):
    session = events.checkout_session("dave", "starter", payment_status="unpaid")
    assert post(web_client, events.event(session), secret).status_code == 200
    eventually(lambda: (doc(deps, "purchases", session["id"]) or {}).get("status") == "pending")
    assert balance(deps, "dave") == 0
    paid = dict(session, payment_status="paid")
    assert post(web_client, events.event(paid, "checkout.session.async_payment_succeeded"), secret).status_code == 200
    eventually(lambda: balance(deps, "dave") == 50)
    assert doc(deps, "purchases", session["id"])["status"] == "fulfilled"


def test_async_failure_and_expiry_credit_nothing(web_client, deps, worker, secret):
    failed = events.checkout_session("erin", "starter", payment_status="unpaid")
    post(web_client, events.event(failed), secret)
    post(web_client, events.event(failed, "checkout.session.async_payment_failed"), secret)
    expired = events.checkout_session("erin", "basic", payment_status="unpaid", status="expired")
    post(web_client, events.event(expired, "checkout.session.expired"), secret)
    eventually(lambda: (doc(deps, "purchases", failed["id"]) or {}).get("status") == "failed")
    eventually(lambda: (doc(deps, "purchases", expired["id"]) or {}).get("status") == "expired")
    assert balance(deps, "erin") == 0
    assert docs(deps, "transactions", userId="erin") == []


def test_reordered_events_never_undo_a_credit(web_client, deps, worker, secret):
    session = events.checkout_session("frank", "starter")
    post(web_client, events.event(session), secret)
    eventually(lambda: balance(deps, "frank") == 50)
    late_unpaid = events.event(dict(session, payment_status="unpaid"))
    late_expired = events.event(session, "checkout.session.expired")
    post(web_client, late_unpaid, secret)
    post(web_client, late_expired, secret)
    eventually(lambda: all((doc(deps, "stripe_events", e["id"]) or {}).get("status") == "processed"
                           for e in (late_unpaid, late_expired)))
    assert doc(deps, "purchases", session["id"])["status"] == "fulfilled"
    assert balance(deps, "frank") == 50


def test_unhandled_event_type_is_answered_and_recorded_as_ignored(web_client, deps, worker, secret):
    evt = events.event({"id": "cus_123", "object": "customer"}, "customer.created")
    resp = post(web_client, evt, secret)
    assert resp.status_code == 200 and resp.json["handled"] is False
    eventually(lambda: (doc(deps, "stripe_events", evt["id"]) or {}).get("status") == "ignored")


def test_eight_concurrent_credits_to_one_user_need_no_transaction_retry(web_client, deps, worker, secret):
    sessions = [events.checkout_session("hot", "starter") for _ in range(8)]
    bodies = [events.signed(events.event(s), secret) for s in sessions]
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda b: web_client.post("/api/stripe/webhook", data=b[0], headers=b[1]).status_code,
                              bodies))
    assert codes == [200] * 8
    eventually(lambda: balance(deps, "hot") == 400, timeout=30)
    purchases = [doc(deps, "purchases", s["id"]) for s in sessions]
    assert [p["creditAttempts"] for p in purchases] == [1] * 8
    entries = docs(deps, "transactions", userId="hot")
    assert sorted(e["balanceAfter"] for e in entries) == list(range(50, 401, 50))


def test_sixth_paid_purchase_in_an_hour_is_credited_and_raises_a_velocity_alert(web_client, deps, worker, secret):
    sessions = [events.checkout_session("eager", "starter") for _ in range(6)]
    for s in sessions[:5]:
        post(web_client, events.event(s), secret)
    eventually(lambda: balance(deps, "eager") == 250)
    assert docs(deps, "security_alerts") == []
    post(web_client, events.event(sessions[5]), secret)
    eventually(lambda: balance(deps, "eager") == 300)  # paid, so credited
    eventually(lambda: len(docs(deps, "security_alerts", type="purchase_velocity_exceeded")) == 1)
    [alert] = docs(deps, "security_alerts", type="purchase_velocity_exceeded")
    assert alert["userId"] == "eager" and alert["details"]["lastHour"] == 6
    assert alert["details"]["checkoutSessionId"] == sessions[5]["id"]


def test_dead_letter_after_the_last_try_keeps_the_event_and_alerts(web_client, deps, worker, secret):
    # Hold the user's lock so every attempt fails transiently until retries run out.
    deps.redis.set("tb:lock:user:{stuck}", "held-by-test", px=60000)
    session = events.checkout_session("stuck", "starter")
    evt = events.event(session)
    post(web_client, evt, secret)
    eventually(lambda: (doc(deps, "stripe_events", evt["id"]) or {}).get("status") == "dead_lettered", timeout=30)
    record = doc(deps, "stripe_events", evt["id"])
    assert record["attempts"] == 7 and "busy" in record["error"]
    assert json.loads(record["payload"])["id"] == evt["id"]
    [alert] = docs(deps, "security_alerts", type="event_dead_lettered")
    assert alert["details"]["stripeEventId"] == evt["id"]
    assert doc(deps, "users", "stuck") is None
