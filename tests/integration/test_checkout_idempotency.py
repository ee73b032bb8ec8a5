"""POST /api/checkout with an Idempotency-Key, on the real stack (Stripe SDK -> sandbox, Redis gate).

A retry with the same key - a second later or minutes later - answers the first session
(same sessionId, url, expiresAt) and takes no second place in the purchase gate; the same
key for another package or plan is 409; without a key every request is a new session.
"""
from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import stripe

from tests.integration.conftest import PROJECT
from tests.support.tokens import bearer

SANDBOX_KEY = {"Authorization": "Bearer sk_test_tokenbank_local_sandbox"}


def checkout(client, uid, key=None, **body):
    headers = {**bearer(uid, PROJECT), **({"Idempotency-Key": key} if key else {})}
    return client.post("/api/checkout", json=body or {"packageId": "starter"}, headers=headers)


def started(resp) -> tuple:
    assert resp.status_code == 200, resp.json
    return resp.json["sessionId"], resp.json["url"], resp.json["expiresAt"]


def places(deps, uid) -> list[str]:
    return deps.redis.zrange(f"tb:reservations:{{{uid}}}", 0, -1)


def sandbox_sessions_of(stripe_sandbox, uid) -> list[str]:
    resp = requests.get(f"{stripe_sandbox.address}/v1/checkout/sessions", params={"limit": 100},
                        headers=SANDBOX_KEY, timeout=5)
    return [s["id"] for s in resp.json()["data"] if s["client_reference_id"] == uid]


@pytest.fixture
def later_client(deps, web_client):
    """The web app with its clock `offset` seconds ahead (the sandbox keeps the real clock)."""
    from web.app import create_app

    queue = web_client.application.config["TOKENBANK_QUEUE"]

    def make(offset: float):
        return create_app(dataclasses.replace(deps, clock=lambda: time.time() + offset), queue).test_client()
    return make


def test_a_retry_one_second_later_returns_the_same_session(web_client, deps, stripe_sandbox):
    first = started(checkout(web_client, "retrier", "click-1"))
    time.sleep(1.1)
    second = started(checkout(web_client, "retrier", "click-1"))
    assert second == first
    assert places(deps, "retrier") == [first[0]]
    assert sandbox_sessions_of(stripe_sandbox, "retrier") == [first[0]]


def test_a_retry_minutes_later_returns_the_same_session(web_client, deps, stripe_sandbox, later_client):
    first = started(checkout(web_client, "patient", "click-2", planId="monthly"))
    ten_minutes_later = later_client(600)
    assert started(checkout(ten_minutes_later, "patient", "click-2", planId="monthly")) == first
    assert started(checkout(later_client(23 * 3600), "patient", "click-2", planId="monthly")) == first
    assert places(deps, "patient") == [first[0]]
    assert sandbox_sessions_of(stripe_sandbox, "patient") == [first[0]]


def test_a_retry_after_the_reservation_exists_takes_no_second_place(web_client, deps):
    first = started(checkout(web_client, "counter", "click-3"))
    assert places(deps, "counter") == [first[0]]
    time.sleep(1.1)
    assert started(checkout(web_client, "counter", "click-3")) == first
    assert places(deps, "counter") == [first[0]]
    # Four more places are left of five, and then the gate refuses...
    others = [started(checkout(web_client, "counter", f"other-{i}"))[0] for i in range(4)]
    assert len(set(others)) == 4 and first[0] not in others
    refused = checkout(web_client, "counter", "other-5")
    assert refused.status_code == 429, refused.json
    # ...but a retry of a checkout that already holds its place still answers its session.
    assert started(checkout(web_client, "counter", "click-3")) == first
    assert len(places(deps, "counter")) == 5


def test_the_same_key_five_times_at_once_is_one_session_and_one_place(web_client, deps, stripe_sandbox):
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: checkout(web_client, "double-clicker", "click-5"), range(5)))
    assert len({started(a) for a in answers}) == 1
    assert places(deps, "double-clicker") == sandbox_sessions_of(stripe_sandbox, "double-clicker") \
        == [answers[0].json["sessionId"]]


def test_the_same_key_for_another_package_or_a_plan_is_a_conflict(web_client, deps, stripe_sandbox):
    first = started(checkout(web_client, "switcher", "click-4", packageId="starter"))
    for body in ({"packageId": "pro"}, {"planId": "monthly"}):
        time.sleep(0.2)
        conflict = checkout(web_client, "switcher", "click-4", **body)
        assert conflict.status_code == 409, conflict.json
        assert conflict.json["error"] == "idempotency_conflict"
        assert "starter" in conflict.json["message"] and "new Idempotency-Key" in conflict.json["message"]
    assert places(deps, "switcher") == [first[0]]
    assert sandbox_sessions_of(stripe_sandbox, "switcher") == [first[0]]
    assert started(checkout(web_client, "switcher", "click-4", packageId="starter")) == first


def test_keys_are_per_user(web_client, deps):
    mine = started(checkout(web_client, "user-a", "shared-key"))
    theirs = started(checkout(web_client, "user-b", "shared-key", packageId="pro"))
    assert mine[0] != theirs[0]
    assert places(deps, "user-a") == [mine[0]] and places(deps, "user-b") == [theirs[0]]


def test_without_a_key_every_checkout_is_a_new_session(web_client, deps):
    one, two = started(checkout(web_client, "keyless")), started(checkout(web_client, "keyless"))
    assert one[0] != two[0] and one[1] != two[1]
    assert sorted(places(deps, "keyless")) == sorted([one[0], two[0]])


def test_the_sandbox_holds_stripe_to_its_idempotency_rule(deps):
    """The same key with the same parameters replays the object; with other parameters: 400 idempotency_error."""
    params = {"mode": "payment", "expires_at": int(time.time()) + 31 * 60,
              "adaptive_pricing": {"enabled": False},
              "line_items": [{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 499,
                                                            "product_data": {"name": "Starter: 50 tokens"}}}]}
    key = {"idempotency_key": f"rule-{time.time_ns()}"}
    created = deps.stripe.v1.checkout.sessions.create(params=params, options=key)
    replayed = deps.stripe.v1.checkout.sessions.create(params=params, options=key)
    assert replayed.id == created.id and replayed.expires_at == created.expires_at
    with pytest.raises(stripe.IdempotencyError) as refused:
        deps.stripe.v1.checkout.sessions.create(params={**params, "expires_at": params["expires_at"] + 1}, options=key)
    assert refused.value.http_status == 400
