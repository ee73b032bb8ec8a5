import json

import pytest
from google.api_core.exceptions import ServiceUnavailable

from core.domain.checkout import CheckoutSession
from core.domain.errors import MalformedEvent
from core.handlers.checkout import fulfil_checkout_session
from core.handlers.registry import process_stripe_event
from core.outcome import Outcome
from core.domain.records import EventRef
from core.domain.stripe_events import (
    CHECKOUT_ASYNC_FAILED, CHECKOUT_ASYNC_SUCCEEDED, CHECKOUT_COMPLETED, CHECKOUT_EXPIRED,
)
from tests.unit.fakes import bare, checkout_session, event_json


def deliver(deps, obj, event_type=CHECKOUT_COMPLETED, event_id=None) -> Outcome:
    return process_stripe_event(deps, event_json(obj, event_type, event_id=event_id))


def test_paid_completion_credits_once_and_a_redelivery_is_already_fulfilled(deps, store):
    session = checkout_session("u1", "basic", session_id="cs_1")
    assert deliver(deps, session, event_id="evt_1") == Outcome("credited", "cs_1", "u1", balance_after=200)
    assert deliver(deps, session, event_id="evt_1") == Outcome("already_fulfilled", "cs_1", "u1")
    assert store.balance("u1") == 200
    assert list(store.ledger) == ["purchase_cs_1"]
    assert store.ledger["purchase_cs_1"]["amount"] == 200
    assert store.purchases["cs_1"]["status"] == "fulfilled"
    assert store.events["evt_1"]["outcome"] == "credited"  # the redelivery does not rewrite what it did


def test_two_events_for_one_session_credit_it_once(deps, store):
    session = checkout_session("u1", "pro", session_id="cs_1", payment_status="paid")
    assert deliver(deps, session, CHECKOUT_COMPLETED, "evt_a").status == "credited"
    assert deliver(deps, session, CHECKOUT_ASYNC_SUCCEEDED, "evt_b").status == "already_fulfilled"
    assert store.balance("u1") == 500
    assert (store.events["evt_a"]["outcome"], store.events["evt_b"]["outcome"]) == ("credited", "already_fulfilled")


def test_credits_add_up_across_purchases(deps, store):
    deliver(deps, checkout_session("u1", "starter"))
    deliver(deps, checkout_session("u1", "premium"))
    assert store.balance("u1") == 1050
    assert store.users["u1"]["totalTokensPurchased"] == 1050


def test_unpaid_completion_is_pending_until_the_async_payment_succeeds(deps, store):
    unpaid = checkout_session("u1", "starter", session_id="cs_1", payment_status="unpaid")
    assert deliver(deps, unpaid) == Outcome("pending", "cs_1", "u1")
    assert store.status("cs_1") == "pending" and store.balance("u1") == 0
    assert deliver(deps, {**unpaid, "payment_status": "paid"}, CHECKOUT_ASYNC_SUCCEEDED).status == "credited"
    assert store.status("cs_1") == "fulfilled" and store.balance("u1") == 50


def test_async_payment_failure_marks_the_purchase_failed(deps, store):
    unpaid = checkout_session("u1", session_id="cs_1", payment_status="unpaid")
    deliver(deps, unpaid)
    assert deliver(deps, unpaid, CHECKOUT_ASYNC_FAILED).status == "failed"
    assert store.status("cs_1") == "failed" and store.balance("u1") == 0


def test_expired_session_is_marked_expired(deps, store):
    opened = checkout_session("u1", session_id="cs_1", payment_status="unpaid", status="expired")
    assert deliver(deps, opened, CHECKOUT_EXPIRED) == Outcome("expired", "cs_1", "u1")
    assert store.status("cs_1") == "expired" and store.purchases["cs_1"]["packageId"] == "starter"


def test_expiry_after_fulfilment_is_skipped_and_the_purchase_stays_fulfilled(deps, store):
    session = checkout_session("u1", session_id="cs_1")
    deliver(deps, session)
    assert deliver(deps, {**session, "status": "expired"}, CHECKOUT_EXPIRED, "evt_x").status == "skipped"
    assert store.status("cs_1") == "fulfilled" and store.balance("u1") == 50
    assert store.events["evt_x"]["outcome"] == "expired_skipped_purchase_is_fulfilled"


def test_late_unpaid_completion_does_not_demote_a_fulfilled_purchase(deps, store):
    session = checkout_session("u1", session_id="cs_1")
    deliver(deps, session, CHECKOUT_ASYNC_SUCCEEDED)
    assert deliver(deps, {**session, "payment_status": "unpaid"}).status == "skipped"
    assert store.status("cs_1") == "fulfilled"


def test_status_event_with_an_invalid_session_id_is_malformed(deps, store):
    with pytest.raises(MalformedEvent):
        deliver(deps, checkout_session("u1", session_id="cs/1", payment_status="unpaid"), CHECKOUT_EXPIRED)
    assert store.purchases == {}


REJECTIONS = [
    ("wrong_mode", {"mode": "subscription"}),
    ("not_paid", {"payment_status": "no_payment_required"}),
    ("user_mismatch", {"client_reference_id": "u_other"}),
    ("missing_user", {"client_reference_id": None, "metadata": {"packageId": "starter", "tokens": "50"}}),
    ("invalid_user", {"client_reference_id": "../admin", "metadata": {"userId": "../admin", "packageId": "starter", "tokens": "50"}}),
    ("unknown_package", {"metadata": {"userId": "u1", "packageId": "gold", "tokens": "50"}}),
    ("tokens_mismatch", {"metadata": {"userId": "u1", "packageId": "starter", "tokens": "5000"}}),
    ("amount_mismatch", {"amount_total": 1}),
    ("currency_mismatch", {"currency": "jpy"}),
]


@pytest.mark.parametrize("reason,overrides", REJECTIONS, ids=[r for r, _ in REJECTIONS])
def test_every_rejection_marks_the_purchase_rejected_with_an_alert_and_credits_nothing(deps, store, reason, overrides):
    outcome = deliver(deps, checkout_session("u1", session_id="cs_bad", **overrides), event_id="evt_bad")
    assert (outcome.status, outcome.session_id, outcome.reason) == ("rejected", "cs_bad", reason)
    assert store.purchases["cs_bad"]["status"] == "rejected"
    assert store.purchases["cs_bad"]["reason"] == reason
    alert = store.alerts["purchase_rejected_cs_bad"]
    assert alert["type"] == "purchase_rejected"
    assert alert["details"]["reason"] == reason and alert["details"]["stripeEventId"] == "evt_bad"
    assert store.ledger == {} and store.balance("u1") == 0
    assert store.events["evt_bad"]["outcome"] == "rejected"


def test_rejection_does_not_overwrite_a_fulfilled_purchase(deps, store):
    deliver(deps, checkout_session("u1", session_id="cs_1"))
    deliver(deps, checkout_session("u1", session_id="cs_1", amount_total=1))
    assert store.status("cs_1") == "fulfilled" and store.balance("u1") == 50


def test_empty_session_id_is_rejected_with_an_alert_and_an_event_record(deps, store):
    outcome = deliver(deps, checkout_session("u1", session_id="", id=""), event_id="evt_noid")
    assert (outcome.status, outcome.reason) == ("rejected", "invalid_session_id")
    assert store.purchases == {} and store.ledger == {}
    assert [a["details"]["reason"] for a in store.alerts.values()] == ["invalid_session_id"]
    assert store.events["evt_noid"]["outcome"] == "rejected"


@pytest.mark.parametrize("session_id", ["cs/x", "c" * 1500])
def test_invalid_session_id_is_rejected_with_an_alert_and_an_event_record(deps, store, session_id):
    outcome = deliver(deps, checkout_session("u1", id=session_id), event_id="evt_badid")
    assert (outcome.status, outcome.reason) == ("rejected", "invalid_session_id")
    assert store.purchases == {} and store.ledger == {}
    assert [a["details"]["reason"] for a in store.alerts.values()] == ["invalid_session_id"]
    assert store.events["evt_badid"]["outcome"] == "rejected"


def test_rejections_of_sessions_without_an_id_keep_one_alert_each(deps, store):
    deliver(deps, checkout_session("u1", id=""), event_id="evt_a")
    deliver(deps, checkout_session("u2", id=""), event_id="evt_b")
    assert len(store.alerts) == 2


def test_sixth_paid_purchase_in_an_hour_raises_a_velocity_alert_and_is_still_credited(deps, store):
    outcomes = [deliver(deps, checkout_session("u1", session_id=f"cs_{n}")) for n in range(1, 7)]
    assert [o.status for o in outcomes] == ["credited"] * 6
    assert [a for a in store.alerts] == ["velocity_cs_6"]
    assert store.alerts["velocity_cs_6"]["details"] == {
        "checkoutSessionId": "cs_6", "lastHour": 6, "lastDay": 6, "limitPerHour": 5, "limitPerDay": 20,
        "credited": True}
    assert store.balance("u1") == 300


def test_redelivered_purchases_do_not_count_twice_towards_velocity(deps, store):
    session = checkout_session("u1", session_id="cs_1")
    for _ in range(10):
        deliver(deps, session)
    assert store.alerts == {}


def test_redelivering_an_earlier_purchase_does_not_raise_a_velocity_alert_for_it(deps, store):
    for n in range(1, 7):
        deliver(deps, checkout_session("u1", session_id=f"cs_{n}"))
    assert deliver(deps, checkout_session("u1", session_id="cs_1")).status == "already_fulfilled"
    assert list(store.alerts) == ["velocity_cs_6"]


def test_velocity_limits_come_from_settings(store, redis):
    from tests.unit.fakes import make_deps
    deps = make_deps(store, redis, PURCHASE_LIMIT_PER_HOUR="1", PURCHASE_LIMIT_PER_DAY="1")
    deliver(deps, checkout_session("u1", session_id="cs_1"))
    deliver(deps, checkout_session("u1", session_id="cs_2"))
    assert list(store.alerts) == ["velocity_cs_2"]


def test_unhandled_event_type_is_recorded_as_ignored(deps, store):
    payload = json.dumps({"id": "evt_inv", "type": "invoice.finalized", "data": {"object": {"id": "in_1"}}})
    assert process_stripe_event(deps, payload) == Outcome("ignored")
    assert bare(store.events["evt_inv"]) == {"type": "invoice.finalized", "status": "ignored"}


def test_malformed_payload_raises_malformed_event(deps):
    with pytest.raises(MalformedEvent):
        process_stripe_event(deps, "[]")


def test_store_outage_during_credit_propagates_and_changes_nothing(deps, store, redis):
    store.uow.fail.append(ServiceUnavailable("firestore down"))
    with pytest.raises(ServiceUnavailable):
        deliver(deps, checkout_session("u1", session_id="cs_1"))
    assert store.ledger == {} and store.purchases == {}
    assert redis.keys("tb:lock:*") == []  # the user lock was released
    assert deliver(deps, checkout_session("u1", session_id="cs_1")).status == "credited"


def test_fulfil_checkout_session_is_idempotent_across_callers(deps, store):
    session = CheckoutSession.from_stripe(checkout_session("u1", "pro", session_id="cs_1"))
    first = fulfil_checkout_session(deps, session, EventRef(None, "success_page", "success_page"))
    again = fulfil_checkout_session(deps, session, EventRef(None, "reconciliation", "reconciliation"))
    assert (first.status, again.status) == ("credited", "already_fulfilled")
    assert store.balance("u1") == 500
    assert store.purchases["cs_1"]["fulfilledBy"] == {"eventId": None, "eventType": "success_page",
                                                      "source": "success_page"}
    assert store.events == {}
