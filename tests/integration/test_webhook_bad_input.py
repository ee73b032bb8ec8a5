"""Everything a stranger can send to the webhook: a clear 4xx, an aggregated alert, nothing credited."""
from __future__ import annotations

import json
import time

import pytest

from tests.integration.conftest import doc, docs, eventually
from devstack import stripe_events as events

URL = "/api/stripe/webhook"


def alerts_of(deps, type_):
    return docs(deps, "security_alerts", type=type_)


def assert_nothing_moved(deps):
    assert docs(deps, "transactions") == []
    assert docs(deps, "users") == []


@pytest.mark.parametrize("case", ["missing", "garbage", "wrong_secret", "stale", "tampered_body", "no_v1"])
def test_bad_signatures_are_refused_with_400_and_alerted(web_client, deps, secret, case):
    evt = events.event(events.checkout_session("mallory"))
    body, headers = events.signed(evt, secret)
    if case == "missing":
        headers.pop("Stripe-Signature")
    elif case == "garbage":
        headers["Stripe-Signature"] = "this is not a signature"
    elif case == "wrong_secret":
        headers["Stripe-Signature"] = events.sign(body.decode(), "whsec_someone_else")
    elif case == "stale":
        headers["Stripe-Signature"] = events.sign(body.decode(), secret, int(time.time()) - 301)
    elif case == "tampered_body":
        body = body.replace(b'"starter"', b'"premium"')
    elif case == "no_v1":
        headers["Stripe-Signature"] = f"t={int(time.time())},v0=abc"
    resp = web_client.post(URL, data=body, headers=headers)
    assert resp.status_code == 400
    assert resp.json["error"] == "webhook_refused" and resp.json["detail"]
    [alert] = alerts_of(deps, "webhook_signature_failure")
    assert alert["details"]["count"] == 1
    assert_nothing_moved(deps)


@pytest.mark.parametrize("body,reason", [
    (b"not json at all", "body is not JSON"),
    (b"[1, 2, 3]", "body is not a Stripe event"),
    (b'{"type": "checkout.session.completed", "data": {"object": {}}}', "body is not a Stripe event"),
    (b'{"id": "evt_1", "data": {"object": {}}}', "body is not a Stripe event"),
    (b'{"id": "evt_1", "type": "", "data": {"object": {}}}', "body is not a Stripe event"),
    (b'{"id": "evt_1", "type": "checkout.session.completed"}', "event has no data.object"),
    (b'{"id": "a/b", "type": "checkout.session.completed", "data": {"object": {}}}', "body is not a Stripe event"),
    (b"\xff\xfe not utf-8", "body is not UTF-8"),
])
def test_signed_bodies_that_are_not_events_are_refused(web_client, deps, secret, body, reason):
    header = events.sign(body.decode("utf-8", "replace"), secret) if reason != "body is not UTF-8" else "t=1,v1=00"
    resp = web_client.post(URL, data=body, headers={"Stripe-Signature": header})
    assert resp.status_code == 400
    assert resp.json["error"] == "webhook_refused"
    assert resp.json["detail"] == reason or reason == "body is not UTF-8"
    assert_nothing_moved(deps)


def test_body_over_256_kib_is_413_and_not_parsed(web_client, deps, secret):
    evt = events.event(events.checkout_session("big"))
    evt["padding"] = "x" * (256 * 1024)
    body, headers = events.signed(evt, secret)
    resp = web_client.post(URL, data=body, headers=headers)
    assert resp.status_code == 413
    assert_nothing_moved(deps)


def test_rotated_secrets_both_verify(deps, celery_producer, worker, settings):
    from dataclasses import replace

    from web.app import create_app
    from broker.event_queue import CeleryEventQueue

    # The web tier is given a second secret the worker does not know: ingress accepts both, the
    # worker (which verifies every job again) credits only what its own secrets verify — so a
    # rotation configures web and worker alike (STRIPE_WEBHOOK_SECRET=new,old on both).
    shared = settings.stripe_webhook_secrets[0]
    rotated = replace(deps, settings=replace(settings, stripe_webhook_secrets=(shared, "whsec_old_one")))
    client = create_app(rotated, CeleryEventQueue(celery_producer)).test_client()
    for secret in ("whsec_old_one", shared):
        body, headers = events.signed(events.event(events.checkout_session("rot")), secret)
        assert client.post(URL, data=body, headers=headers).status_code == 200
    # Stripe sends one v1 per active secret during a rotation.
    evt = events.event(events.checkout_session("rot"))
    body = json.dumps(evt)
    t = int(time.time())
    both = events.sign(body, "whsec_unknown", t) + "," + events.sign(body, shared, t).split(",")[1]
    assert client.post(URL, data=body, headers={"Stripe-Signature": both}).status_code == 200
    eventually(lambda: (doc(deps, "users", "rot") or {}).get("tokenBalance") == 100)
    eventually(lambda: len(alerts_of(deps, "unverified_job")) == 1)  # the old-secret-only job


def test_a_flood_of_forgeries_writes_a_handful_of_alerts(web_client, deps):
    body = json.dumps(events.event(events.checkout_session("flood")))
    for _ in range(120):
        assert web_client.post(URL, data=body, headers={"Stripe-Signature": "t=1,v1=deadbeef"}).status_code == 400
    found = alerts_of(deps, "webhook_signature_failure")
    assert 1 <= len(found) <= 2  # one document per minute window (the flood may straddle two)
    assert sum(a["details"]["count"] for a in found) >= 100  # rewritten at 1, 10, 100


def test_wrong_methods_and_paths(web_client):
    assert web_client.get(URL).status_code == 405
    assert web_client.post("/api/stripe/nope").status_code == 404


REJECTIONS = [
    ("wrong_mode", dict(mode="subscription")),
    ("missing_user", dict(client_reference_id=None, metadata={"packageId": "starter", "tokens": "50"})),
    ("invalid_user", dict(client_reference_id="a/b", metadata={"userId": "a/b", "packageId": "starter", "tokens": "50"})),
    ("invalid_user", dict(client_reference_id="..", metadata={"userId": "..", "packageId": "starter", "tokens": "50"})),
    ("invalid_user", dict(client_reference_id="u" * 129, metadata={"packageId": "starter", "tokens": "50"})),
    ("user_mismatch", dict(client_reference_id="eve", metadata={"userId": "victim", "packageId": "starter", "tokens": "50"})),
    ("unknown_package", dict(metadata={"userId": "rej", "packageId": "mega", "tokens": "50"})),
    ("tokens_mismatch", dict(metadata={"userId": "rej", "packageId": "starter", "tokens": "5000"})),
    ("amount_mismatch", dict(amount_total=1)),
    ("currency_mismatch", dict(currency="eur")),
]


@pytest.mark.parametrize("reason,overrides", REJECTIONS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(REJECTIONS)])
def test_a_paid_session_that_disagrees_with_the_catalog_is_rejected_not_credited(
        web_client, deps, worker, secret, reason, overrides):
    session = events.checkout_session("rej", "starter", **overrides)
    evt = events.event(session)
    body, headers = events.signed(evt, secret)
    assert web_client.post(URL, data=body, headers=headers).status_code == 200
    eventually(lambda: (doc(deps, "purchases", session["id"]) or {}).get("status") == "rejected")
    purchase = doc(deps, "purchases", session["id"])
    assert purchase["reason"] == reason
    [alert] = alerts_of(deps, "purchase_rejected")
    assert alert["details"]["reason"] == reason and alert["details"]["checkoutSessionId"] == session["id"]
    event_record = doc(deps, "stripe_events", evt["id"])
    assert event_record["status"] == "rejected" and event_record["outcome"] == "rejected"
    assert_nothing_moved(deps)
