"""No secret ever reaches a log line: webhook secrets, signatures, API keys."""
from __future__ import annotations

import io
import logging

import pytest

from core.services import ingress as webhook_ingress
from core.errors import EnqueueFailed, WebhookRefused
from core.handlers.registry import process_stripe_event
from core.logs import JsonFormatter
from tests.unit.fakes import (
    WEBHOOK_SECRET, OLD_WEBHOOK_SECRET, BrokenQueue, FakeQueue, checkout_session, event_json, make_deps, sign,
)


@pytest.fixture
def captured():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("demo-project"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def test_ingress_and_fulfilment_logs_carry_ids_but_no_secret(captured):
    deps = make_deps(STRIPE_SECRET_KEY="sk_test_do_not_log_me_123")
    payload = event_json(checkout_session("loguser"))
    header = sign(payload)
    webhook_ingress.receive(deps, FakeQueue(), payload.encode(), header)
    for bad in ("t=1,v1=" + "ab" * 32, sign(payload, "whsec_forged")):
        with pytest.raises(WebhookRefused):
            webhook_ingress.receive(deps, FakeQueue(), payload.encode(), bad, webhook_ingress.signature_alert(deps))
    other = event_json(checkout_session("loguser"))  # a new event: the broker refuses it (logged, kept)
    webhook_ingress.receive(deps, BrokenQueue(), other.encode(), sign(other))
    deps.store.fail["receive_event"] = ConnectionError("firestore down")  # the inbox fails: a 503
    with pytest.raises(EnqueueFailed):
        webhook_ingress.receive(deps, FakeQueue(), other.encode(), sign(other))
    process_stripe_event(deps, payload)
    text = captured.getvalue()
    assert "loguser" in text and "evt_" in text  # the context is there
    for secret in (WEBHOOK_SECRET, OLD_WEBHOOK_SECRET, "sk_test_do_not_log_me_123", header.split("v1=")[1],
                   "whsec_forged"):
        assert secret not in text
