"""Token plans on the real stack: signed subscription and invoice events (built on Stripe's own
example objects) through the web tier, the broker and a real worker into the Firestore
emulator; and a plan checkout through POST /api/checkout against the Stripe sandbox."""
from __future__ import annotations

import copy
import json
import time
from functools import lru_cache

import requests

from tests.integration.conftest import PROJECT, doc, docs, eventually
from devstack import stripe_events as events
from tests.support.tokens import bearer

SANDBOX_KEY = {"Authorization": "Bearer sk_test_tokenbank_local_sandbox"}


@lru_cache(maxsize=None)
def _fixture(kind: str) -> dict:
    return json.loads(events.FIXTURES.read_text())["resources"][kind]


def subscription(user_id: str, *, sub_id: str, status: str = "active", period_end: int | None = None,
                 **overrides) -> dict:
    obj = copy.deepcopy(_fixture("subscription"))
    obj["items"]["data"][0]["current_period_end"] = period_end or int(time.time()) + 30 * 86400
    obj.update({"id": sub_id, "status": status, "metadata": {"userId": user_id, "planId": "monthly"},
                "cancel_at_period_end": False, "created": int(time.time())})
    obj.update(overrides)
    return obj


def invoice(user_id: str, *, sub_id: str, invoice_id: str | None = None, amount_paid: int = 2499,
            billing_reason: str = "subscription_cycle", **overrides) -> dict:
    obj = copy.deepcopy(_fixture("invoice"))
    now = int(time.time())
    obj["lines"]["data"][0]["period"] = {"start": now, "end": now + 30 * 86400}
    obj.update({"id": invoice_id or events.new_id("in"), "status": "paid" if amount_paid else "open",
                "amount_due": 2499, "amount_paid": amount_paid, "amount_remaining": 2499 - amount_paid,
                "currency": "usd", "billing_reason": billing_reason,
                "parent": {"type": "subscription_details", "quote_details": None,
                           "subscription_details": {"subscription": sub_id,
                                                    "metadata": {"userId": user_id, "planId": "monthly"}}}})
    obj.update(overrides)
    return obj


def post(web_client, evt, secret):
    body, headers = events.signed(evt, secret)
    resp = web_client.post("/api/stripe/webhook", data=body, headers=headers)
    assert resp.status_code == 200, resp.data
    assert resp.json["handled"] is True
    return resp


def at(evt: dict, created: int) -> dict:
    evt["created"] = created
    return evt


def processed(deps, evt) -> dict:
    """The event's record once the worker finished it (processed, or rejected for good)."""
    eventually(lambda: (doc(deps, "stripe_events", evt["id"]) or {}).get("status") in ("processed", "rejected"),
               what=f"{evt['type']} processed")
    return doc(deps, "stripe_events", evt["id"])


def stored_subscription(deps, uid) -> dict:
    return (doc(deps, "users", uid) or {}).get("subscription") or {}


def test_subscription_events_apply_in_event_order_not_arrival_order(web_client, deps, worker, secret):
    t0 = int(time.time())
    created = at(events.event(subscription("sam", sub_id="sub_sam", status="incomplete"),
                              "customer.subscription.created"), t0)
    post(web_client, created, secret)
    assert processed(deps, created)["outcome"] == "mirrored"
    current = subscription("sam", sub_id="sub_sam", cancel_at_period_end=True, period_end=t0 + 99)
    updated = at(events.event(current, "customer.subscription.updated"), t0 + 10)
    post(web_client, updated, secret)
    assert processed(deps, updated)["outcome"] == "mirrored"
    late = at(events.event(subscription("sam", sub_id="sub_sam", status="incomplete"),
                           "customer.subscription.created"), t0 + 5)
    post(web_client, late, secret)
    assert processed(deps, late)["outcome"] == "stale"
    assert stored_subscription(deps, "sam") == {"id": "sub_sam", "status": "active", "plan": "monthly",
                                                "currentPeriodEnd": t0 + 99, "cancelAtPeriodEnd": True,
                                                "created": current["created"], "eventCreated": t0 + 10}
    deleted = at(events.event(subscription("sam", sub_id="sub_sam"), "customer.subscription.deleted"), t0 + 20)
    post(web_client, deleted, secret)
    processed(deps, deleted)
    assert stored_subscription(deps, "sam")["status"] == "canceled"
    assert docs(deps, "security_alerts") == [] and docs(deps, "transactions") == []


def test_invoice_paid_twice_credits_the_allowance_once(web_client, deps, worker, secret):
    inv = invoice("ivy", sub_id="sub_ivy", billing_reason="subscription_create")
    first = events.event(inv, "invoice.paid")
    post(web_client, first, secret)
    post(web_client, first, secret)  # Stripe's redelivery of the same event
    redelivered = events.event(inv, "invoice.paid")  # and another event for the same invoice
    post(web_client, redelivered, secret)
    for evt in (first, redelivered):
        processed(deps, evt)
    eventually(lambda: (doc(deps, "users", "ivy") or {}).get("tokenBalance") == 600, what="allowance")
    entries = docs(deps, "transactions", userId="ivy")
    assert [e["_id"] for e in entries] == [f"subscription_{inv['id']}"]
    entry = entries[0]
    assert (entry["type"], entry["amount"], entry["balanceAfter"]) == ("subscription_allowance", 600, 600)
    assert (entry["invoiceId"], entry["subscriptionId"], entry["planId"]) == (inv["id"], "sub_ivy", "monthly")
    assert (entry["amountPaid"], entry["currency"]) == (2499, "usd")
    assert entry["stripeEventId"] in (first["id"], redelivered["id"])
    assert entry["periodEnd"] == inv["lines"]["data"][0]["period"]["end"]
    user = doc(deps, "users", "ivy")
    assert (user["tokenBalance"], user["totalTokensPurchased"]) == (600, 600)
    outcomes = sorted(doc(deps, "stripe_events", e["id"])["outcome"] for e in (first, redelivered))
    assert outcomes in (["already_fulfilled", "credited"], ["already_fulfilled", "already_fulfilled"])
    second_month = events.event(invoice("ivy", sub_id="sub_ivy"), "invoice.paid")
    post(web_client, second_month, secret)
    eventually(lambda: doc(deps, "users", "ivy")["tokenBalance"] == 1200, what="second allowance")
    assert docs(deps, "security_alerts") == []


def test_an_invoice_for_the_wrong_amount_is_rejected_with_an_alert(web_client, deps, worker, secret):
    inv = invoice("cheap", sub_id="sub_cheap", amount_paid=99)
    evt = events.event(inv, "invoice.paid")
    post(web_client, evt, secret)
    record = processed(deps, evt)
    assert (record["status"], record["outcome"], record["reason"]) == ("rejected", "rejected", "amount_mismatch")
    alert = doc(deps, "security_alerts", f"subscription_invoice_rejected_{inv['id']}")
    assert alert["type"] == "subscription_invoice_rejected" and alert["userId"] == "cheap"
    assert doc(deps, "users", "cheap") is None and docs(deps, "transactions") == []


def test_payment_failed_marks_the_subscription_past_due_and_alerts(web_client, deps, worker, secret):
    t0 = int(time.time())
    sub = subscription("paula", sub_id="sub_paula", period_end=t0 + 77)
    created = at(events.event(sub, "customer.subscription.created"), t0)
    post(web_client, created, secret)
    processed(deps, created)
    inv = invoice("paula", sub_id="sub_paula", amount_paid=0)
    failed = at(events.event(inv, "invoice.payment_failed"), t0 + 30)
    post(web_client, failed, secret)
    assert processed(deps, failed)["outcome"] == "past_due"
    assert stored_subscription(deps, "paula") == {"id": "sub_paula", "status": "past_due", "plan": "monthly",
                                                  "currentPeriodEnd": t0 + 77, "cancelAtPeriodEnd": False,
                                                  "created": sub["created"], "eventCreated": t0 + 30}
    alert = doc(deps, "security_alerts", f"subscription_payment_failed_{inv['id']}")
    assert alert["type"] == "subscription_payment_failed" and alert["userId"] == "paula"
    assert alert["details"]["subscriptionId"] == "sub_paula"
    assert doc(deps, "users", "paula").get("tokenBalance", 0) == 0


def _sandbox_event(stripe_sandbox, event_type: str, object_id: str) -> dict:
    found = requests.get(f"{stripe_sandbox.address}/v1/events", params={"type": event_type, "limit": 100},
                         headers=SANDBOX_KEY, timeout=5).json()["data"]
    [evt] = [e for e in found if e["data"]["object"]["id"] == object_id]
    return evt


def test_plan_checkout_through_the_api_creates_a_subscription_session(web_client, deps, worker, secret,
                                                                     stripe_sandbox):
    headers = bearer("planner", PROJECT)
    resp = web_client.post("/api/checkout", json={"planId": "monthly"}, headers=headers)
    assert resp.status_code == 200, resp.json
    session_id = resp.json["sessionId"]
    session = requests.get(f"{stripe_sandbox.address}/v1/checkout/sessions/{session_id}", headers=SANDBOX_KEY,
                           timeout=5).json()
    assert session["mode"] == "subscription" and session["amount_total"] == 2499 and session["currency"] == "usd"
    assert session["metadata"] == {"userId": "planner", "planId": "monthly"}
    assert session["client_reference_id"] == "planner"
    assert session["success_url"] == "http://tokenbank.test/purchase/success?session_id={CHECKOUT_SESSION_ID}"
    assert deps.redis.zrange("tb:reservations:{planner}", 0, -1) == [session_id]

    # Pay on the sandbox, then hand its own events to the webhook as Stripe would.
    paid = requests.post(f"{stripe_sandbox.address}/_sandbox/checkout/{session_id}/pay",
                         json={"card": "4242424242424242"}, timeout=5)
    assert paid.status_code == 200, paid.text
    completed = _sandbox_event(stripe_sandbox, "checkout.session.completed", session_id)
    sub_id = completed["data"]["object"]["subscription"]
    sub_created = _sandbox_event(stripe_sandbox, "customer.subscription.created", sub_id)
    assert sub_created["data"]["object"]["metadata"] == {"userId": "planner", "planId": "monthly"}
    for evt in (completed, sub_created):
        post(web_client, evt, secret)
    assert processed(deps, completed)["outcome"] == "plan_checkout_paid"
    assert processed(deps, sub_created)["outcome"] == "mirrored"
    stored = stored_subscription(deps, "planner")
    assert (stored["id"], stored["status"], stored["plan"]) == (sub_id, "active", "monthly")
    assert stored["currentPeriodEnd"] > time.time()
    assert deps.redis.zcard("tb:reservations:{planner}") == 0  # the paid place moved to the velocity window
    assert deps.redis.zrange("tb:velocity:{planner}", 0, -1) == [session_id]
    assert docs(deps, "purchases") == [] and docs(deps, "security_alerts") == []


def test_checkout_takes_exactly_one_of_package_or_plan(web_client, deps):
    headers = bearer("chooser", PROJECT)
    for body, field in (({"packageId": "starter", "planId": "monthly"}, None), ({}, "packageId"),
                        ({"planId": "yearly"}, "planId"), ({"planId": 7}, "planId"), ({"planId": None}, "planId")):
        resp = web_client.post("/api/checkout", json=body, headers=headers)
        assert resp.status_code == 400, (body, resp.json)
        assert resp.json["field"] == field, body
    assert deps.redis.zcard("tb:reservations:{chooser}") == 0
