"""A user's token plan through the Flask test client on the real stack: the Stripe sandbox (a plan
Checkout paid on it, its subscription cancelled through the real SDK), signed webhooks built
from the sandbox's own events, a real worker, Firestore and Redis.

GET /api/subscription, POST /api/subscription/cancel, GET /api/plan-checkouts/<session id>.
"""
from __future__ import annotations

import dataclasses

import pytest
import requests
import stripe

from core.adapters.stripe_payments import StripePayments
from core.domain.stripe_objects import invoice_subscription
from devstack import stripe_events as events
from tests.integration.conftest import PROJECT, doc, docs, eventually
from tests.support.tokens import bearer, id_token

SANDBOX_KEY = {"Authorization": "Bearer sk_test_tokenbank_local_sandbox"}
ENDPOINTS = [("get", "/api/subscription"), ("post", "/api/subscription/cancel"),
             ("get", "/api/plan-checkouts/cs_test_x")]


def auth(uid):
    return bearer(uid, PROJECT)


def stripe_get(sandbox, path):
    resp = requests.get(f"{sandbox.address}/v1/{path}", headers=SANDBOX_KEY, timeout=5)
    assert resp.status_code == 200, resp.text
    return resp.json()


def sandbox_events(sandbox, event_type, object_id=None) -> list[dict]:
    """The sandbox's own events of this type (full bodies, oldest first), optionally about one object."""
    found = requests.get(f"{sandbox.address}/_sandbox/events", params={"type": event_type}, timeout=5).json()["data"]
    return [stripe_get(sandbox, f"events/{e['id']}") for e in found
            if object_id is None or e["data_object_id"] == object_id]


def deliver(web_client, deps, evt, secret):
    """The sandbox's event, signed with the web tier's secret, through the webhook and the worker."""
    body, headers = events.signed(evt, secret)
    resp = web_client.post("/api/stripe/webhook", data=body, headers=headers)
    assert resp.status_code == 200, resp.data
    eventually(lambda: (doc(deps, "stripe_events", evt["id"]) or {}).get("status") == "processed",
               what=f"{evt['type']} processed")


def mirrored(deps, uid) -> dict:
    return (doc(deps, "users", uid) or {}).get("subscription") or {}


def subscribe(web_client, deps, sandbox, secret, uid) -> tuple[str, str]:
    """A plan Checkout started through the API and paid on the sandbox; the sandbox's
    customer.subscription.created delivered. Answers (session id, subscription id)."""
    started = web_client.post("/api/checkout", json={"planId": "monthly"}, headers=auth(uid))
    assert started.status_code == 200, started.json
    session_id = started.json["sessionId"]
    paid = requests.post(f"{sandbox.address}/_sandbox/checkout/{session_id}/pay",
                         json={"card": "4242424242424242"}, timeout=5)
    assert paid.status_code == 200, paid.text
    sub_id = stripe_get(sandbox, f"checkout/sessions/{session_id}")["subscription"]
    assert sub_id and sub_id.startswith("sub_")
    [created] = sandbox_events(sandbox, "customer.subscription.created", sub_id)
    deliver(web_client, deps, created, secret)
    assert mirrored(deps, uid)["id"] == sub_id
    return session_id, sub_id


def first_invoice_paid(sandbox, sub_id) -> dict:
    paid = [e for e in sandbox_events(sandbox, "invoice.paid") if invoice_subscription(e["data"]["object"])[0] == sub_id]
    assert len(paid) == 1, f"the sandbox sent {len(paid)} invoice.paid for {sub_id}"
    return paid[0]


@pytest.mark.parametrize("method,path", ENDPOINTS)
@pytest.mark.parametrize("header", [{}, {"Authorization": "Bearer not.a.jwt"},
                                    {"Authorization": f"Bearer {id_token('alice', 'demo-someone-else')}"}],
                         ids=["missing", "garbage", "foreign project"])
def test_every_plan_endpoint_answers_401_without_a_valid_token(web_client, method, path, header):
    resp = getattr(web_client, method)(path, headers=header)
    assert resp.status_code == 401 and resp.json["error"] == "unauthorized"


def test_without_a_plan_the_page_sees_none_and_cancel_is_404(web_client):
    assert web_client.get("/api/subscription", headers=auth("newcomer")).json == {"subscription": None}
    resp = web_client.post("/api/subscription/cancel", headers=auth("newcomer"))
    assert resp.status_code == 404 and resp.json["error"] == "no_subscription"


@pytest.mark.parametrize("kwargs", [{"json": {"atPeriodEnd": "yes"}}, {"json": {"atPeriodEnd": None}},
                                    {"json": {"atPeriodEnd": True, "subscriptionId": "sub_x"}}, {"json": [True]},
                                    {"data": "atPeriodEnd=true", "content_type": "application/x-www-form-urlencoded"},
                                    {"data": "{not json", "content_type": "application/json"}],
                         ids=["string", "null", "an id of the client's", "array", "form", "broken json"])
def test_a_bad_cancel_body_is_400_and_reaches_no_one(web_client, kwargs):
    resp = web_client.post("/api/subscription/cancel", headers=auth("picky"), **kwargs)
    assert resp.status_code == 400 and resp.json["error"] == "invalid_request", resp.json


def test_subscribe_then_cancel_at_period_end_through_stripe_and_the_mirror_follows(web_client, deps, stripe_sandbox,
                                                                                  worker, secret):
    _, sub_id = subscribe(web_client, deps, stripe_sandbox, secret, "subscriber")
    at_stripe = stripe_get(stripe_sandbox, f"subscriptions/{sub_id}")
    period_end = at_stripe["items"]["data"][0]["current_period_end"]
    shown = web_client.get("/api/subscription", headers=auth("subscriber")).json["subscription"]
    assert shown == {"id": sub_id, "status": "active", "live": True, "plan": "monthly", "planName": "Monthly",
                     "tokensPerPeriod": 600, "priceCents": 2499, "currency": "usd", "interval": "month",
                     "currentPeriodEnd": period_end, "cancelAtPeriodEnd": False}

    resp = web_client.post("/api/subscription/cancel", json={"atPeriodEnd": True}, headers=auth("subscriber"))
    assert resp.status_code == 200, resp.json
    assert resp.json["subscription"] == {**shown, "cancelAtPeriodEnd": True}
    assert stripe_get(stripe_sandbox, f"subscriptions/{sub_id}")["cancel_at_period_end"] is True
    assert mirrored(deps, "subscriber")["cancelAtPeriodEnd"] is False  # the webhook writes it, not the API

    [updated] = sandbox_events(stripe_sandbox, "customer.subscription.updated", sub_id)
    assert updated["data"]["object"]["cancel_at_period_end"] is True
    deliver(web_client, deps, updated, secret)
    assert mirrored(deps, "subscriber")["cancelAtPeriodEnd"] is True
    assert web_client.get("/api/subscription", headers=auth("subscriber")).json["subscription"] == \
        resp.json["subscription"]
    again = web_client.post("/api/subscription/cancel", headers=auth("subscriber"))  # no body: at period end
    assert again.status_code == 409 and again.json["error"] == "already_canceling"
    assert again.json["subscription"]["cancelAtPeriodEnd"] is True
    assert len(sandbox_events(stripe_sandbox, "customer.subscription.updated", sub_id)) == 1  # Stripe not asked


def test_cancel_never_touches_another_users_subscription(web_client, deps, stripe_sandbox, worker, secret):
    _, alices = subscribe(web_client, deps, stripe_sandbox, secret, "alice")
    resp = web_client.post("/api/subscription/cancel", headers=auth("mallory"))
    assert resp.status_code == 404
    assert stripe_get(stripe_sandbox, f"subscriptions/{alices}")["cancel_at_period_end"] is False
    assert sandbox_events(stripe_sandbox, "customer.subscription.updated", alices) == []


def test_immediate_cancel_ends_the_plan_now_when_asked(web_client, deps, stripe_sandbox, worker, secret):
    _, sub_id = subscribe(web_client, deps, stripe_sandbox, secret, "leaver")
    resp = web_client.post("/api/subscription/cancel", json={"atPeriodEnd": False}, headers=auth("leaver"))
    assert resp.status_code == 200, resp.json
    assert (resp.json["subscription"]["status"], resp.json["subscription"]["live"]) == ("canceled", False)
    assert stripe_get(stripe_sandbox, f"subscriptions/{sub_id}")["status"] == "canceled"
    [deleted] = sandbox_events(stripe_sandbox, "customer.subscription.deleted", sub_id)
    deliver(web_client, deps, deleted, secret)
    assert mirrored(deps, "leaver")["status"] == "canceled"
    assert web_client.post("/api/subscription/cancel", headers=auth("leaver")).status_code == 404


def test_stripe_refusing_is_502_and_nothing_changes(deps, celery_producer, stripe_sandbox, worker, web_client,
                                                    secret, settings):
    from broker.event_queue import CeleryEventQueue
    from web.app import create_app

    _, sub_id = subscribe(web_client, deps, stripe_sandbox, secret, "refused")
    # The same stack, but Stripe refuses this API key (the sandbox, like Stripe, answers 401).
    refusing = StripePayments(stripe.StripeClient("sk_test_x", base_addresses={"api": settings.stripe_api_base}))
    client = create_app(dataclasses.replace(deps, payments=refusing), CeleryEventQueue(celery_producer)).test_client()
    resp = client.post("/api/subscription/cancel", headers=auth("refused"))
    assert resp.status_code == 502 and resp.json["error"] == "payment_provider_unavailable"
    assert "nothing changed" in resp.json["message"]
    assert stripe_get(stripe_sandbox, f"subscriptions/{sub_id}")["cancel_at_period_end"] is False
    assert mirrored(deps, "refused")["cancelAtPeriodEnd"] is False


def test_the_success_page_sees_its_plan_checkout_credited_once(web_client, deps, stripe_sandbox, worker, secret):
    session_id, sub_id = subscribe(web_client, deps, stripe_sandbox, secret, "planner")
    waiting = web_client.get(f"/api/plan-checkouts/{session_id}", headers=auth("planner"))
    assert waiting.status_code == 200, waiting.json
    assert (waiting.json["planId"], waiting.json["credited"], waiting.json["balance"]) == ("monthly", False, 0)
    paid = first_invoice_paid(stripe_sandbox, sub_id)
    deliver(web_client, deps, paid, secret)
    deliver(web_client, deps, paid, secret)  # a redelivery credits nothing more
    done = web_client.get(f"/api/plan-checkouts/{session_id}", headers=auth("planner")).json
    assert (done["credited"], done["tokens"], done["balance"]) == (True, 600, 600)
    assert [e["amount"] for e in docs(deps, "transactions", userId="planner", type="subscription_allowance")] == [600]
    # Only its owner sees it; a package checkout or a malformed id is not a plan checkout.
    assert web_client.get(f"/api/plan-checkouts/{session_id}", headers=auth("someone")).status_code == 404
    package = web_client.post("/api/checkout", json={"packageId": "starter"}, headers=auth("planner")).json
    assert web_client.get(f"/api/plan-checkouts/{package['sessionId']}", headers=auth("planner")).status_code == 404
    assert web_client.get("/api/plan-checkouts/not-a-session", headers=auth("planner")).status_code == 400
