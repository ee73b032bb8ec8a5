import json
import time

import pytest

from core.errors import EnqueueFailed, WebhookRefused
from core.services.ingress import Received, receive, signature_alert
from tests.unit.fakes import (
    OLD_WEBHOOK_SECRET, WEBHOOK_SECRET, BrokenQueue, FakeQueue, checkout_session, event, make_deps, sign,
)


@pytest.fixture
def queue():
    return FakeQueue()


@pytest.fixture
def refusals():
    return []


@pytest.fixture
def deliver(deps, queue, refusals):
    """Sign ``payload`` (unless a header is given) and hand it to ``receive``."""
    def deliver(payload, header=..., *, secret=WEBHOOK_SECRET, timestamp=None, to=None):
        body = payload if isinstance(payload, bytes) else payload.encode()
        if header is ...:
            header = sign(body.decode("utf-8", "replace"), secret, timestamp)
        return receive(deps, to or queue, body, header, refusals.append)
    return deliver


def refused(deliver, *args, **kwargs) -> WebhookRefused:
    with pytest.raises(WebhookRefused) as refusal:
        deliver(*args, **kwargs)
    return refusal.value


def completed_event(event_id="evt_in_1"):
    # Indented, non-ASCII and key order that json.dumps would not reproduce: the queue must get it as sent.
    obj = checkout_session(session_id="cs_in_1", customer_details={"name": "Zoë"})
    return "{\n  \"type\": \"checkout.session.completed\",   \"id\": \"%s\",\n  \"data\": {\"object\": %s}\n}" % (
        event_id, json.dumps(obj, ensure_ascii=False))


def test_verified_event_is_enqueued_with_the_raw_payload_unchanged(deliver, queue, refusals):
    payload = completed_event()
    assert deliver(payload) == Received("evt_in_1", "checkout.session.completed", True)
    assert queue.events == [("evt_in_1", "checkout.session.completed", payload)]
    assert refusals == []


def test_event_signed_with_the_previous_rotation_secret_is_accepted(deliver, queue):
    assert deliver(completed_event(), secret=OLD_WEBHOOK_SECRET).handled
    assert len(queue.events) == 1


@pytest.mark.parametrize("signers", [(OLD_WEBHOOK_SECRET, WEBHOOK_SECRET), (WEBHOOK_SECRET, OLD_WEBHOOK_SECRET),
                                     ("whsec_unknown", WEBHOOK_SECRET)])
def test_header_with_one_v1_signature_per_secret_is_accepted(deps, queue, signers):
    payload, ts = completed_event(), int(time.time())
    v1 = ",".join(sign(payload, secret, ts).split(",")[1] for secret in signers)
    assert receive(deps, queue, payload.encode(), f"t={ts},{v1}").handled


def test_future_timestamp_is_accepted_as_stripes_sdk_does(deliver, queue):
    assert deliver(completed_event(), timestamp=int(time.time()) + 3600).handled


@pytest.mark.parametrize("header,reason", [
    (None, "missing Stripe-Signature header"),
    ("", "missing Stripe-Signature header"),
    ("garbage", "malformed Stripe-Signature header"),
    ("t=notanumber,v1=abc", "malformed Stripe-Signature header"),
    ("t=1700000000", "signature mismatch"),
    ("t=1700000000,v1=0000", "signature mismatch"),
])
def test_missing_or_garbage_signature_header_is_refused(deliver, queue, store, refusals, header, reason):
    refusal = refused(deliver, completed_event(), header)
    assert (refusal.status, refusal.reason) == (400, reason)
    assert refusals == [reason]
    assert queue.events == [] and store.events == {}  # a refused body never reaches the inbox


def test_wrong_secret_is_refused(deliver, queue):
    refusal = refused(deliver, completed_event(), secret="whsec_attacker")
    assert (refusal.status, refusal.reason) == (400, "signature mismatch")
    assert queue.events == []


def test_body_changed_after_signing_is_refused(deps, queue):
    header = sign(completed_event())
    with pytest.raises(WebhookRefused, match="signature mismatch"):
        receive(deps, queue, completed_event().replace("cs_in_1", "cs_in_2").encode(), header)


@pytest.mark.parametrize("secret", [WEBHOOK_SECRET, OLD_WEBHOOK_SECRET])
def test_stale_timestamp_is_refused(deliver, queue, refusals, secret):
    refusal = refused(deliver, completed_event(), secret=secret, timestamp=int(time.time()) - 400)
    assert (refusal.status, refusal.reason) == (400, "timestamp outside the tolerance zone")
    assert refusals == ["timestamp outside the tolerance zone"]
    assert queue.events == []


def test_non_utf8_body_is_refused(deliver, refusals):
    refusal = refused(deliver, b'{"id": "evt_\xff"}', "t=1,v1=x")
    assert (refusal.status, refusal.reason) == (400, "body is not UTF-8")
    assert refusals == ["body is not UTF-8"]


@pytest.mark.parametrize("payload,reason", [
    ("not json", "body is not JSON"),
    ("[1, 2, 3]", "body is not a Stripe event"),
    (json.dumps({"type": "checkout.session.completed", "data": {"object": {}}}), "body is not a Stripe event"),
    (json.dumps({"id": "evt/1", "type": "checkout.session.completed", "data": {"object": {}}}),
     "body is not a Stripe event"),
    (json.dumps({"id": "evt_1", "data": {"object": {}}}), "body is not a Stripe event"),
    (json.dumps({"id": "evt_1", "type": "checkout.session.completed"}), "event has no data.object"),
    (json.dumps({"id": "evt_1", "type": "checkout.session.completed", "data": {"object": "cs_1"}}),
     "event has no data.object"),
])
def test_signed_body_that_is_not_an_event_is_refused(deliver, queue, store, refusals, payload, reason):
    refusal = refused(deliver, payload)
    assert (refusal.status, refusal.reason) == (400, reason)
    assert refusals == [reason]
    assert queue.events == [] and store.events == {}


def padded_event(size: int) -> str:
    raw = event(checkout_session(session_id="cs_pad"), event_id="evt_pad")
    raw["padding"] = ""
    raw["padding"] = "x" * (size - len(json.dumps(raw)))
    payload = json.dumps(raw)
    assert len(payload) == size
    return payload


def test_body_at_the_size_limit_is_accepted_and_one_byte_over_is_refused_with_413(queue, refusals):
    deps = make_deps(WEBHOOK_MAX_BODY_BYTES="2048")
    fits = padded_event(2048)
    assert receive(deps, queue, fits.encode(), sign(fits)).handled
    big = padded_event(2049)
    with pytest.raises(WebhookRefused) as refusal:
        receive(deps, queue, big.encode(), sign(big), refusals.append)
    assert (refusal.value.status, refusal.value.reason) == (413, "body too large")
    assert refusals == ["body too large"]
    assert len(queue.events) == 1


def test_unhandled_event_type_is_recorded_as_ignored_in_the_inbox_not_enqueued(deliver, queue, store):
    payload = json.dumps(event({"id": "in_1"}, "invoice.finalized", event_id="evt_inv"))
    assert deliver(payload) == Received("evt_inv", "invoice.finalized", False)
    assert store.events["evt_inv"]["status"] == "ignored" and "payload" not in store.events["evt_inv"]
    assert queue.events == []


def test_a_handled_event_is_in_the_inbox_with_its_payload_and_signature_before_it_is_enqueued(deliver, queue, store):
    payload = completed_event()
    header = sign(payload)
    deliver(payload, header)
    record = store.events["evt_in_1"]
    assert (record["status"], record["payload"], record["signature"], record["deliveryCount"]) == \
        ("received", payload, header, 1)
    assert queue.events == [("evt_in_1", "checkout.session.completed", payload)] and queue.signatures == [header]


def test_a_redelivery_counts_the_delivery_and_changes_nothing_else(deliver, queue, store):
    payload = completed_event()
    deliver(payload)
    store.events["evt_in_1"]["status"] = "processed"  # the worker finished it meanwhile
    deliver(payload)
    record = store.events["evt_in_1"]
    assert (record["status"], record["deliveryCount"]) == ("processed", 2)
    assert len(queue.events) == 1  # a known event is not enqueued again: its record decides


def test_a_broker_that_refuses_the_job_still_answers_received(deliver, store, refusals):
    """The inbox holds the event: the sweeper enqueues it later (issue 10)."""
    assert deliver(completed_event(), to=BrokenQueue()) == Received("evt_in_1", "checkout.session.completed", True)
    assert store.events["evt_in_1"]["status"] == "received" and refusals == []


def test_an_inbox_that_cannot_be_written_is_a_503_and_nothing_is_enqueued(deliver, queue, store, refusals):
    store.fail["receive_event"] = ConnectionError("firestore down")
    with pytest.raises(EnqueueFailed, match="inbox unavailable"):
        deliver(completed_event())
    assert queue.events == [] and refusals == []  # a 503, not a refusal: Stripe delivers it again


def test_signature_alert_hook_counts_refusals_into_one_alert(deps, queue, store):
    hook = signature_alert(deps)
    for _ in range(10):
        with pytest.raises(WebhookRefused):
            receive(deps, queue, completed_event().encode(), "garbage", hook)
    (alert_id,) = store.alerts
    assert store.alerts[alert_id]["details"]["count"] == 10
    assert store.alerts[alert_id]["details"]["lastReason"] == "malformed Stripe-Signature header"


def test_signature_alert_hook_never_raises_when_the_store_is_down(deps, queue, store):
    store.fail["add_alert"] = RuntimeError("firestore down")
    with pytest.raises(WebhookRefused):  # the refusal itself, not the hook's failure
        receive(deps, queue, completed_event().encode(), "garbage", signature_alert(deps))
