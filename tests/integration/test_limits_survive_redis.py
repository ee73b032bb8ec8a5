"""Purchase limits survive Redis losing its data (issue 10): the windows are rebuilt from
Firestore before the next checkout is admitted, so an empty Redis never resets them to zero."""
from __future__ import annotations

import redis as redis_lib

from devstack import stripe_events as events
from tests.integration.conftest import doc, eventually
from tests.integration.test_user_api import checkout


def post(web_client, evt, secret):
    body, headers = events.signed(evt, secret)
    assert web_client.post("/api/stripe/webhook", data=body, headers=headers).status_code == 200


def lose_redis_data(settings):
    redis_lib.Redis.from_url(settings.redis_url).flushdb()


def test_paid_purchases_still_count_after_redis_lost_them(web_client, deps, worker, settings, secret):
    sessions = [events.checkout_session("paid5", "starter") for _ in range(5)]
    for session in sessions:
        post(web_client, events.event(session), secret)
    eventually(lambda: (doc(deps, "users", "paid5") or {}).get("tokenBalance") == 250, what="five credits")
    lose_redis_data(settings)
    resp = checkout(web_client, "paid5")
    assert resp.status_code == 429, resp.json  # before: the empty windows admitted it


def test_open_checkouts_still_count_after_redis_lost_them(web_client, settings, stripe_sandbox):
    for _ in range(5):
        assert checkout(web_client, "open5").status_code == 200
    lose_redis_data(settings)
    resp = checkout(web_client, "open5")
    assert resp.status_code == 429, resp.json
    assert "open checkouts count" in resp.json["message"]
