"""The signed-in user's API on the real stack: Stripe SDK -> sandbox, Redis gate, Firestore, worker."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.integration.conftest import PROJECT, doc, docs, eventually
from devstack import stripe_events as events
from tests.support.tokens import bearer, id_token


def auth(uid):
    return bearer(uid, PROJECT)


def checkout(client, uid, package="starter", **headers):
    return client.post("/api/checkout", json={"packageId": package}, headers={**auth(uid), **headers})


def sandbox_session(stripe_sandbox, session_id):
    return requests.get(f"{stripe_sandbox.address}/v1/checkout/sessions/{session_id}",
                        headers={"Authorization": "Bearer sk_test_tokenbank_local_sandbox"}, timeout=5).json()


def pay(stripe_sandbox, session_id, card="4242424242424242"):
    resp = requests.post(f"{stripe_sandbox.address}/_sandbox/checkout/{session_id}/pay", json={"card": card}, timeout=5)
    assert resp.status_code == 200, resp.text


ENDPOINTS = [("post", "/api/checkout"), ("get", "/api/tokens/balance"), ("get", "/api/tokens/transactions"),
             ("get", "/api/purchases/cs_test_x"), ("post", "/api/purchases/cs_test_x/confirm"),
             ("get", "/api/tokens/transactions.csv"), ("get", "/api/purchases/cs_test_x/receipt"),
             ("post", "/api/billing-portal")]
BAD_AUTH = {
    "missing": {},
    "not bearer": {"Authorization": "Basic dXNlcjpwYXNz"},
    "garbage": {"Authorization": "Bearer not.a.jwt"},
    "expired": {"Authorization": f"Bearer {id_token('alice', PROJECT, issued=int(time.time()) - 7200)}"},
    "foreign project": {"Authorization": f"Bearer {id_token('alice', 'demo-someone-else')}"},
    "issued in the future": {"Authorization": f"Bearer {id_token('alice', PROJECT, issued=int(time.time()) + 86_400)}"},
    "invalid uid": {"Authorization": f"Bearer {id_token('a/b', PROJECT)}"},
}


@pytest.mark.parametrize("method,path", ENDPOINTS)
@pytest.mark.parametrize("case", BAD_AUTH)
def test_every_user_endpoint_answers_401_without_a_valid_token(web_client, method, path, case):
    resp = getattr(web_client, method)(path, json={"packageId": "starter"}, headers=BAD_AUTH[case])
    assert resp.status_code == 401, resp.json
    assert resp.json["error"] == "unauthorized" and resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_checkout_creates_a_catalog_priced_session_and_reserves_a_place(web_client, deps, stripe_sandbox):
    resp = checkout(web_client, "buyer", "basic")
    assert resp.status_code == 200, resp.json
    session = sandbox_session(stripe_sandbox, resp.json["sessionId"])
    assert resp.json["url"] == session["url"]
    assert session["mode"] == "payment" and session["amount_total"] == 1499 and session["currency"] == "usd"
    assert session["client_reference_id"] == "buyer"
    assert session["metadata"] == {"userId": "buyer", "packageId": "basic", "tokens": "200"}
    assert session["success_url"] == "http://tokenbank.test/purchase/success?session_id={CHECKOUT_SESSION_ID}"
    assert 30 * 60 <= session["expires_at"] - int(time.time()) <= 32 * 60
    intent_meta = requests.post(f"{stripe_sandbox.address}/_sandbox/checkout/{session['id']}/pay",
                                json={"card": "4242424242424242"}, timeout=5)
    assert intent_meta.status_code == 200
    paid = sandbox_session(stripe_sandbox, session["id"])
    intent = requests.get(f"{stripe_sandbox.address}/v1/payment_intents/{paid['payment_intent']}",
                          headers={"Authorization": "Bearer sk_test_tokenbank_local_sandbox"}, timeout=5).json()
    assert intent["metadata"] == {"userId": "buyer", "packageId": "basic", "tokens": "200"}
    assert deps.redis.zrange("tb:reservations:{buyer}", 0, -1) == [session["id"]]


def test_the_same_idempotency_key_gives_the_same_session_and_one_place(web_client, deps):
    first = checkout(web_client, "clicker", **{"Idempotency-Key": "click-1"})
    second = checkout(web_client, "clicker", **{"Idempotency-Key": "click-1"})
    assert first.status_code == second.status_code == 200
    assert first.json["sessionId"] == second.json["sessionId"]
    assert deps.redis.zcard("tb:reservations:{clicker}") == 1


@pytest.mark.parametrize("body,content_type,status,field", [
    ({"packageId": "mega"}, "application/json", 400, "packageId"),
    ({"packageId": 5}, "application/json", 400, "packageId"),
    ({"packageId": None}, "application/json", 400, "packageId"),
    ({}, "application/json", 400, "packageId"),
    ({"packageId": "starter", "price": 1}, "application/json", 400, None),
    ({"packageId": "starter", "tokens": 5000}, "application/json", 400, None),
    (["starter"], "application/json", 400, None),
    ("not json", "application/json", 400, None),
    ("packageId=starter", "application/x-www-form-urlencoded", 400, None),
    ({"packageId": "x" * 5000}, "application/json", 413, None),
])
def test_checkout_bad_input_is_refused_and_reserves_nothing(web_client, deps, body, content_type, status, field):
    data = body if isinstance(body, str) else json.dumps(body)
    resp = web_client.post("/api/checkout", data=data, content_type=content_type, headers=auth("picky"))
    assert resp.status_code == status, resp.json
    assert resp.json["message"] if status == 400 else True
    if field:
        assert resp.json["field"] == field
    assert deps.redis.zcard("tb:reservations:{picky}") == 0


def test_bad_idempotency_key_is_refused(web_client):
    assert checkout(web_client, "u", **{"Idempotency-Key": "a/b"}).status_code == 400
    assert checkout(web_client, "u", **{"Idempotency-Key": "k" * 65}).status_code == 400


def test_ten_checkouts_at_once_create_exactly_five_sessions(web_client, deps, stripe_sandbox):
    with ThreadPoolExecutor(10) as pool:
        responses = list(pool.map(lambda _: checkout(web_client, "rush"), range(10)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 5 + [429] * 5
    refused = [r for r in responses if r.status_code == 429]
    assert all(int(r.headers["Retry-After"]) > 0 for r in refused)
    assert "5 purchases per hour" in refused[0].json["message"]
    assert len({r.json["sessionId"] for r in responses if r.status_code == 200}) == 5
    assert deps.redis.zcard("tb:reservations:{rush}") == 5


def test_an_expired_checkout_frees_its_place(web_client, deps, worker, secret, stripe_sandbox):
    ids = [checkout(web_client, "abandoner").json["sessionId"] for _ in range(5)]
    assert checkout(web_client, "abandoner").status_code == 429
    expired = requests.post(f"{stripe_sandbox.address}/v1/checkout/sessions/{ids[0]}/expire",
                            headers={"Authorization": "Bearer sk_test_tokenbank_local_sandbox"}, timeout=5).json()
    body, headers = events.signed(events.event(expired, "checkout.session.expired"), secret)
    assert web_client.post("/api/stripe/webhook", data=body, headers=headers).status_code == 200
    eventually(lambda: (doc(deps, "purchases", ids[0]) or {}).get("status") == "expired")
    assert checkout(web_client, "abandoner").status_code == 200


def test_success_page_path_credits_a_paid_session_without_any_webhook(web_client, deps, worker, stripe_sandbox):
    session_id = checkout(web_client, "closer", "pro").json["sessionId"]
    pay(stripe_sandbox, session_id)
    assert web_client.get(f"/api/purchases/{session_id}", headers=auth("closer")).status_code == 404  # not yet
    resp = web_client.post(f"/api/purchases/{session_id}/confirm", headers=auth("closer"))
    assert resp.status_code == 202
    eventually(lambda: web_client.get(f"/api/purchases/{session_id}", headers=auth("closer")).status_code == 200)
    eventually(lambda: web_client.get(f"/api/purchases/{session_id}",
                                      headers=auth("closer")).json["status"] == "fulfilled")
    status = web_client.get(f"/api/purchases/{session_id}", headers=auth("closer")).json
    assert status["tokens"] == 500 and status["balance"] == 500
    # asking again, and the webhook arriving late, change nothing
    web_client.post(f"/api/purchases/{session_id}/confirm", headers=auth("closer"))
    time.sleep(1)
    assert doc(deps, "users", "closer")["tokenBalance"] == 500
    assert len(docs(deps, "transactions", userId="closer")) == 1
    assert doc(deps, "purchases", session_id)["fulfilledBy"]["source"] == "success_page"
    assert deps.redis.zcard("tb:reservations:{closer}") == 0  # a paid checkout is no longer a reservation


def test_another_users_purchase_is_not_found(web_client, deps, worker, stripe_sandbox):
    session_id = checkout(web_client, "owner").json["sessionId"]
    pay(stripe_sandbox, session_id)
    web_client.post(f"/api/purchases/{session_id}/confirm", headers=auth("owner"))
    eventually(lambda: (doc(deps, "purchases", session_id) or {}).get("status") == "fulfilled")
    resp = web_client.get(f"/api/purchases/{session_id}", headers=auth("intruder"))
    assert resp.status_code == 404 and "tokens" not in resp.json


@pytest.mark.parametrize("session_id", ["nope", "cs_" + "x" * 300, "cs_..", "__cs__"])
def test_bad_session_ids_are_400(web_client, session_id):
    assert web_client.get(f"/api/purchases/{session_id}", headers=auth("u")).status_code == 400
    assert web_client.post(f"/api/purchases/{session_id}/confirm", headers=auth("u")).status_code == 400


def test_confirmations_are_rate_limited_per_user(web_client, worker):
    # Probing ids that are not the user's costs the same budget (and is a quiet 404).
    codes = [web_client.post("/api/purchases/cs_test_missing/confirm", headers=auth("spammer")).status_code
             for _ in range(32)]
    assert codes[:30] == [404] * 30 and codes[30:] == [429, 429]


def test_balance_and_ledger_pages_newest_first_with_a_cursor(web_client, deps, worker, secret):
    sessions = [events.checkout_session("reader", "starter") for _ in range(5)]
    for s in sessions:
        body, headers = events.signed(events.event(s), secret)
        web_client.post("/api/stripe/webhook", data=body, headers=headers)
        eventually(lambda s=s: (doc(deps, "purchases", s["id"]) or {}).get("status") == "fulfilled")
    balance = web_client.get("/api/tokens/balance", headers=auth("reader")).json
    assert balance == {"userId": "reader", "tokenBalance": 250, "totalTokensPurchased": 250,
                       "totalTokensEarned": 0, "totalTokensSpent": 0, "totalTokensExpired": 0, "available": 250,
                       "held": 0, "expiring": [], "frozen": False, "frozenSince": None, "debt": 0}
    first = web_client.get("/api/tokens/transactions?limit=2", headers=auth("reader")).json
    assert [e["balanceAfter"] for e in first["entries"]] == [250, 200]
    assert all(e["label"] == "Purchase: Starter package" and e["receiptFor"] == e["checkoutSessionId"]
               for e in first["entries"])
    second = web_client.get(f"/api/tokens/transactions?limit=2&cursor={first['nextCursor']}",
                            headers=auth("reader")).json
    third = web_client.get(f"/api/tokens/transactions?limit=2&cursor={second['nextCursor']}",
                           headers=auth("reader")).json
    assert [e["balanceAfter"] for e in second["entries"] + third["entries"]] == [150, 100, 50]
    assert third["nextCursor"] is None
    # someone else's cursor, and nonsense, are refused
    assert web_client.get(f"/api/tokens/transactions?cursor={first['nextCursor']}",
                          headers=auth("other")).status_code == 400
    for query in ("limit=0", "limit=101", "limit=abc", "cursor=a/b", "cursor=nope"):
        assert web_client.get(f"/api/tokens/transactions?{query}", headers=auth("reader")).status_code == 400
    assert web_client.get("/api/tokens/balance", headers=auth("newcomer")).json["tokenBalance"] == 0


def test_pages_render_with_security_headers_and_only_the_publishable_key(web_client, settings):
    page = web_client.get("/buy-tokens")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for name, price in (("Starter", "$4.99"), ("Basic", "$14.99"), ("Pro", "$29.99"), ("Premium", "$49.99")):
        assert name in html and price in html
    assert settings.stripe_publishable_key in html and settings.stripe_secret_key not in html
    assert all(s not in html for s in settings.stripe_webhook_secrets)
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert "<script>" not in html and " on" + "click=" not in html
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert web_client.get("/purchase/cancel").status_code == 200
    assert web_client.get("/purchase/success?session_id=cs_test_abc").status_code == 200
    assert web_client.get("/purchase/success?session_id=../../etc").status_code == 400
    assert web_client.get("/purchase/success").status_code == 400
    assert web_client.get("/nowhere").status_code == 404
    assert web_client.get("/").status_code == 302
