"""Webhook endpoints (core/domain/webhook_endpoints.py, core/services/endpoints.py) and the
Standard Webhooks signature (core/adapters/webhook_sender.py), checked with the
``standardwebhooks`` package's own verifier: URLs, event types, thresholds, secrets shown once,
rotation with two signatures for 24 hours."""
from __future__ import annotations

import base64
import dataclasses
import json
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from core.adapters.webhook_sender import headers
from core.domain.errors import InvalidRequest, UnknownEndpoint
from core.domain.webhook_endpoints import ROTATION_OVERLAP_SECONDS, endpoint_url, event_types, format_secret
from core.services import endpoints
from tests.unit.fake_webhooks import Clock, webhook_deps
from tests.unit.fakes import FIXED_NOW


@pytest.mark.parametrize("url", ["https://app.example.com/hooks/tokenbank", "http://127.0.0.1:8080/h",
                                 "https://app.example.com:8443/h?src=tokenbank"])
def test_good_urls(url):
    assert endpoint_url(url, https_only=False) == url


@pytest.mark.parametrize("url", ["ftp://app.example.com/h", "javascript:alert(1)", "https://", "app.example.com/h",
                                 "https://user:pw@app.example.com/h", "https://app.example.com/h#frag",
                                 "https://app.example.com/a b", "https://app.example.com:99999/h",
                                 "https://app.example.com/\n", "https://x.test/" + "a" * 2048, "", None, 42])
def test_bad_urls_are_refused_with_a_reason(url):
    with pytest.raises(InvalidRequest) as refused:
        endpoint_url(url, https_only=False)
    assert refused.value.field == "url" and "http or https" in refused.value.message


def test_production_takes_https_only():
    with pytest.raises(InvalidRequest) as refused:
        endpoint_url("http://app.example.com/h", https_only=True)
    assert "https URL" in refused.value.message
    assert endpoint_url("https://app.example.com/h", https_only=True)


def test_event_types_are_checked_and_deduplicated():
    assert event_types("tokens.credited, tokens.debited,tokens.credited") == ("tokens.credited", "tokens.debited")
    for bad in ("tokens.credit", "", " , ", "tokens.credited,*"):
        with pytest.raises(InvalidRequest) as refused:
            event_types(bad)
        assert refused.value.field == "events" and "known: tokens.credited" in refused.value.message


def test_secrets_are_standard_webhooks_secrets_of_at_least_24_random_bytes():
    secret = format_secret(bytes(range(32)))
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    Webhook(secret)  # the package accepts it
    with pytest.raises(ValueError):
        format_secret(b"x" * 23)


# --- the operators' commands ---------------------------------------------------------------------

@pytest.fixture
def clock():
    return Clock(FIXED_NOW)


@pytest.fixture
def wdeps(deps, clock):
    return webhook_deps(deps, clock)


def test_add_shows_the_secret_once_and_list_never_does(wdeps, store):
    made = endpoints.add(wdeps, "https://app.test/h", "tokens.debited,balance.low", 100, "ann")
    assert made["secret"].startswith("whsec_") and len(base64.b64decode(made["secret"][6:])) >= 24
    assert made["id"].startswith("ep_") and made["lowThreshold"] == 100 and made["addedBy"] == "ann"
    listed = endpoints.list_endpoints(wdeps)
    assert [e["id"] for e in listed] == [made["id"]] and made["secret"] not in json.dumps(listed)
    assert "secret" not in listed[0]
    assert store.docs["ops_log"] and "whsec_" not in json.dumps(list(store.docs["ops_log"].values()))


@pytest.mark.parametrize("events,threshold,field", [("balance.low", None, "lowThreshold"),
                                                    ("tokens.debited", 5, "lowThreshold"),
                                                    ("balance.low", 0, "lowThreshold"),
                                                    ("balance.low", True, "lowThreshold"),
                                                    ("nope", None, "events")])
def test_add_refuses_bad_subscriptions_and_stores_nothing(wdeps, store, events, threshold, field):
    with pytest.raises(InvalidRequest) as refused:
        endpoints.add(wdeps, "https://app.test/h", events, threshold, "ann")
    assert refused.value.field == field and store.docs["webhook_endpoints"] == {}


def test_add_in_production_refuses_http(wdeps, store):
    production = dataclasses.replace(wdeps, settings=dataclasses.replace(wdeps.settings, env="production"))
    with pytest.raises(InvalidRequest):
        endpoints.add(production, "http://app.test/h", "tokens.credited", None, "ann")
    assert store.docs["webhook_endpoints"] == {}


def test_an_operator_is_required(wdeps):
    with pytest.raises(InvalidRequest):
        endpoints.add(wdeps, "https://app.test/h", "tokens.credited", None, " ")


def test_rotation_signs_with_both_secrets_for_24_hours_then_the_new_one_only(wdeps, clock):
    made = endpoints.add(wdeps, "https://app.test/h", "tokens.credited", None, "ann")
    old = made["secret"]
    clock.advance(60)
    rotated = endpoints.rotate_secret(wdeps, made["id"], "bob")
    new = rotated["secret"]
    assert new != old and rotated["rotatedBy"] == "bob"
    assert rotated["previousSecretValidUntil"] == clock() + ROTATION_OVERLAP_SECONDS
    endpoint = wdeps.store.get_endpoint(made["id"])
    assert endpoint.signing_secrets(clock()) == [new, old]
    assert endpoint.signing_secrets(clock() + ROTATION_OVERLAP_SECONDS) == [new]
    again = endpoints.rotate_secret(wdeps, made["id"], "bob")["secret"]  # a second rotation within the day
    assert wdeps.store.get_endpoint(made["id"]).signing_secrets(clock()) == [again, new, old]
    with pytest.raises(UnknownEndpoint):
        endpoints.rotate_secret(wdeps, "ep_missing", "bob")


def test_two_signatures_each_verify_with_its_own_secret_and_no_other():
    old, new = format_secret(b"o" * 32), format_secret(b"n" * 32)
    body = json.dumps({"type": "tokens.credited", "data": {"userId": "u1"}})
    now = int(time.time())
    sent = headers([new, old], "ev_abc_1", now, body)
    assert sent["webhook-id"] == "ev_abc_1" and sent["webhook-timestamp"] == str(now)
    assert len(sent["webhook-signature"].split(" ")) == 2
    assert all(part.startswith("v1,") for part in sent["webhook-signature"].split(" "))
    for secret in (old, new):
        assert Webhook(secret).verify(body, sent) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(format_secret(b"x" * 32)).verify(body, sent)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body.replace("u1", "u2"), sent)  # the body is what is signed
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body, {**sent, "webhook-id": "ev_abc_2"})  # and the id
