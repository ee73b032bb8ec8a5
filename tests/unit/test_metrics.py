"""Each thing that happens moves its own counter (default registry, one process)."""
from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from core.services import ingress as webhook_ingress
from core.services.checkout import RateLimited
from core.errors import WebhookRefused
from core.handlers.registry import process_stripe_event
from tests.unit.fakes import FakeQueue, checkout_session, event_json, make_deps, sign
from tests.unit.test_purchase_gate import checkout_deps
from core.services.checkout import start_checkout


def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_credit_moves_credits_tokens_and_latency():
    deps = make_deps()
    before = (value("tokenbank_credits_total", source="webhook"), value("tokenbank_credited_tokens_total"),
              value("tokenbank_webhook_to_credit_seconds_count"))
    process_stripe_event(deps, event_json(checkout_session("m1", "pro")))
    assert value("tokenbank_credits_total", source="webhook") == before[0] + 1
    assert value("tokenbank_credited_tokens_total") == before[1] + 500
    assert value("tokenbank_webhook_to_credit_seconds_count") == before[2] + 1


def test_a_rejection_is_counted_by_reason():
    before = value("tokenbank_purchase_rejections_total", reason="amount_mismatch")
    process_stripe_event(make_deps(), event_json(checkout_session("m2", amount_total=1)))
    assert value("tokenbank_purchase_rejections_total", reason="amount_mismatch") == before + 1


def test_webhook_outcomes_are_counted():
    deps = make_deps()
    payload = event_json(checkout_session("m3"))
    before = (value("tokenbank_webhooks_received_total", type="checkout.session.completed", outcome="enqueued"),
              value("tokenbank_webhook_signature_failures_total", reason="signature mismatch"))
    webhook_ingress.receive(deps, FakeQueue(), payload.encode(), sign(payload))
    with pytest.raises(WebhookRefused):
        webhook_ingress.receive(deps, FakeQueue(), payload.encode(), sign(payload, "whsec_forged"))
    assert value("tokenbank_webhooks_received_total", type="checkout.session.completed",
                 outcome="enqueued") == before[0] + 1
    assert value("tokenbank_webhook_signature_failures_total", reason="signature mismatch") == before[1] + 1


def test_gate_refusals_are_counted():
    deps = checkout_deps()
    for _ in range(5):
        start_checkout(deps, "m4", "starter")
    before = value("tokenbank_rate_limit_refusals_total")
    with pytest.raises(RateLimited):
        start_checkout(deps, "m4", "starter")
    assert value("tokenbank_rate_limit_refusals_total") == before + 1


def test_metrics_endpoint_needs_the_token_when_one_is_configured():
    from dataclasses import replace

    from web.app import create_app
    from tests.unit.fakes import FakeQueue

    deps = make_deps()
    open_app = create_app(deps, FakeQueue()).test_client()
    assert open_app.get("/metrics").status_code == 200
    guarded = create_app(replace(deps, settings=replace(deps.settings, metrics_token="t0k")), FakeQueue()).test_client()
    assert guarded.get("/metrics").status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert guarded.get("/metrics", headers={"Authorization": "Bearer t0k"}).status_code == 200


def test_the_user_api_answers_503_when_redis_is_down():
    from dataclasses import replace

    import redis

    from web.app import create_app
    from tests.support.tokens import bearer
    from tests.unit.fakes import FakeQueue

    class DownRedis:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise redis.exceptions.ConnectionError("redis is down")
            return fail

    deps = replace(make_deps(), redis=DownRedis(), verify_id_token=lambda token: "alice")
    client = create_app(deps, FakeQueue()).test_client()
    resp = client.post("/api/checkout", json={"packageId": "starter"}, headers=bearer("alice", "p"))
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
