"""A user's token plan (core/services/plans.py) on the fakes: what the page is shown, cancelling
the user's own mirrored subscription through the Payments port, and a plan checkout's progress;
and what the Stripe adapter sends for a cancellation (the real SDK over a recording HTTP client)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import stripe

from core.adapters.stripe_payments import StripePayments
from core.services import plans
from tests.unit.fakes import FIXED_NOW
from tests.unit.test_subscriptions import PERIOD_END, T, deliver, invoice, subscription

NEXT_PERIOD_END = PERIOD_END + 30 * 86400


def mirror(store, user_id="u1", **state):
    store.users.setdefault(user_id, {})["subscription"] = {
        "id": "sub_1", "status": "active", "plan": "monthly", "currentPeriodEnd": PERIOD_END,
        "cancelAtPeriodEnd": False, "eventCreated": T, **state}


def at_stripe(deps, sub_id="sub_1", user_id="u1", **overrides):
    """The subscription as Stripe holds it (FakePayments answers cancel_subscription from it)."""
    deps.payments.subscriptions[sub_id] = subscription(user_id, sub_id=sub_id, **overrides)
    return deps.payments.subscriptions[sub_id]


# -- what the page shows ------------------------------------------------------------------
def test_no_subscription_is_none(deps):
    assert plans.subscription_state(deps, "nobody") == {"subscription": None}


def test_the_mirrored_subscription_with_the_plans_catalog_terms(deps, store):
    mirror(store)
    assert plans.subscription_state(deps, "u1") == {"subscription": {
        "id": "sub_1", "status": "active", "live": True, "plan": "monthly", "planName": "Monthly",
        "tokensPerPeriod": 600, "priceCents": 2499, "currency": "usd", "interval": "month",
        "currentPeriodEnd": PERIOD_END, "cancelAtPeriodEnd": False}}


@pytest.mark.parametrize("status", ["canceled", "incomplete_expired"])
def test_an_ended_subscription_is_shown_as_not_live(deps, store, status):
    mirror(store, status=status)
    shown = plans.subscription_state(deps, "u1")["subscription"]
    assert (shown["status"], shown["live"]) == (status, False)


def test_a_plan_no_longer_in_the_catalog_is_shown_without_terms(deps, store):
    mirror(store, plan=None)
    shown = plans.subscription_state(deps, "u1")["subscription"]
    assert shown["plan"] is shown["planName"] is shown["tokensPerPeriod"] is None and shown["live"] is True


# -- cancel -------------------------------------------------------------------------------
def test_cancel_sets_cancel_at_period_end_on_the_users_own_subscription(deps, store):
    mirror(store)
    at_stripe(deps)
    answer = plans.cancel_subscription(deps, "u1")
    assert deps.payments.cancellations == [("sub_1", True)]
    assert deps.payments.subscriptions["sub_1"]["cancel_at_period_end"] is True
    shown = answer["subscription"]
    assert (shown["id"], shown["status"], shown["live"], shown["cancelAtPeriodEnd"]) == ("sub_1", "active", True, True)
    assert shown["currentPeriodEnd"] == PERIOD_END and shown["plan"] == "monthly"
    # Nothing written: the mirror follows Stripe's customer.subscription.updated.
    assert store.users["u1"]["subscription"]["cancelAtPeriodEnd"] is False and store.ledger == {}


def test_the_mirror_then_follows_stripes_updated_event_and_a_second_cancel_is_409(deps, store):
    deliver(deps, subscription(), "customer.subscription.created", created=T)
    at_stripe(deps)
    plans.cancel_subscription(deps, "u1")
    deliver(deps, deps.payments.subscriptions["sub_1"], "customer.subscription.updated", created=T + 5)
    shown = plans.subscription_state(deps, "u1")["subscription"]
    assert (shown["cancelAtPeriodEnd"], shown["live"]) == (True, True)
    with pytest.raises(plans.AlreadyCanceling) as already:
        plans.cancel_subscription(deps, "u1")
    assert already.value.state == shown
    assert deps.payments.cancellations == [("sub_1", True)]  # the 409 asked Stripe nothing
    deliver(deps, deps.payments.subscriptions["sub_1"], "customer.subscription.deleted", created=T + 60)
    assert plans.subscription_state(deps, "u1")["subscription"]["live"] is False


@pytest.mark.parametrize("state", ["no user", "no plan", {"status": "canceled"}, {"status": "incomplete_expired"},
                                   {"id": None}, {"id": ""}])
def test_no_live_subscription_is_404_and_stripe_is_not_asked(deps, store, state):
    if state == "no plan":
        store.users["u1"] = {"tokenBalance": 50}
    elif isinstance(state, dict):
        mirror(store, **state)
    at_stripe(deps)
    with pytest.raises(plans.NoSubscription):
        plans.cancel_subscription(deps, "u1")
    assert deps.payments.cancellations == []


def test_only_the_callers_mirrored_subscription_is_ever_cancelled(deps, store):
    mirror(store, "alice", id="sub_alice")
    mirror(store, "bob", id="sub_bob")
    at_stripe(deps, "sub_alice", "alice")
    at_stripe(deps, "sub_bob", "bob")
    plans.cancel_subscription(deps, "bob")
    with pytest.raises(plans.NoSubscription):
        plans.cancel_subscription(deps, "carol")  # no plan: nobody else's is touched
    assert deps.payments.cancellations == [("sub_bob", True)]
    assert deps.payments.subscriptions["sub_alice"]["cancel_at_period_end"] is False


@pytest.mark.parametrize("error", [stripe.APIConnectionError("connection refused"),
                                   stripe.InvalidRequestError("A canceled subscription can only update its metadata.",
                                                              "id", http_status=400),
                                   stripe.AuthenticationError("Invalid API Key provided", http_status=401),
                                   RuntimeError("anything else")])
def test_stripe_refusing_is_cancel_refused_and_nothing_changes(deps, store, error):
    mirror(store)
    at_stripe(deps)
    deps.payments.cancel_error = error
    with pytest.raises(plans.CancelRefused):
        plans.cancel_subscription(deps, "u1")
    assert store.users["u1"]["subscription"]["cancelAtPeriodEnd"] is False
    assert deps.payments.subscriptions["sub_1"]["cancel_at_period_end"] is False


def test_a_mirrored_subscription_stripe_has_already_ended_is_refused(deps, store):
    mirror(store)  # the deleted webhook has not arrived yet
    at_stripe(deps, status="canceled")
    with pytest.raises(plans.CancelRefused):
        plans.cancel_subscription(deps, "u1")


def test_a_subscription_stripe_does_not_know_is_404(deps, store):
    mirror(store, id="sub_forgotten")
    with pytest.raises(plans.NoSubscription):
        plans.cancel_subscription(deps, "u1")
    assert deps.payments.cancellations == [("sub_forgotten", True)]


def test_the_period_end_stripe_answers_wins_over_the_mirrors(deps, store):
    mirror(store)
    at_stripe(deps, items={"data": [{"current_period_end": NEXT_PERIOD_END}]})
    assert plans.cancel_subscription(deps, "u1")["subscription"]["currentPeriodEnd"] == NEXT_PERIOD_END


def test_immediate_cancel_ends_it_now_even_when_already_set_to_end(deps, store):
    mirror(store, cancelAtPeriodEnd=True)
    at_stripe(deps, cancel_at_period_end=True)
    shown = plans.cancel_subscription(deps, "u1", at_period_end=False)["subscription"]
    assert deps.payments.cancellations == [("sub_1", False)]
    assert (shown["status"], shown["live"]) == ("canceled", False)


def test_a_past_due_subscription_can_be_cancelled(deps, store):
    mirror(store, status="past_due")
    at_stripe(deps, status="past_due")
    assert plans.cancel_subscription(deps, "u1")["subscription"]["cancelAtPeriodEnd"] is True


# -- a plan checkout's progress (the success page) ------------------------------------------
def started(store, session_id="cs_plan", user_id="u1", item="plan:monthly", at: datetime | None = None):
    store.docs["checkouts"][session_id] = {"userId": user_id, "item": item, "expiresAt": int(FIXED_NOW) + 1860,
                                           **({"createdAt": at} if at else {})}


@pytest.mark.parametrize("session_id,user_id,item", [("cs_unknown", "u1", "plan:monthly"),
                                                     ("cs_plan", "someone_else", "plan:monthly"),
                                                     ("cs_plan", "u1", "package:starter")])
def test_only_the_users_own_plan_checkout_is_answered(deps, store, session_id, user_id, item):
    started(store, "cs_plan", user_id, item)
    assert plans.plan_checkout(deps, "u1", session_id) is None


def test_a_plan_checkout_waits_for_the_first_invoice_then_shows_the_allowance_once(deps, store):
    started(store)
    waiting = plans.plan_checkout(deps, "u1", "cs_plan")
    assert waiting == {"sessionId": "cs_plan", "planId": "monthly", "planName": "Monthly", "credited": False,
                       "tokens": None, "balance": 0, "subscription": None}
    deliver(deps, subscription(), "customer.subscription.created")
    deliver(deps, invoice(invoice_id="in_first", billing_reason="subscription_create"), "invoice.paid")
    deliver(deps, invoice(invoice_id="in_first", billing_reason="subscription_create"), "invoice.paid")
    done = plans.plan_checkout(deps, "u1", "cs_plan")
    assert (done["credited"], done["tokens"], done["balance"]) == (True, 600, 600)
    assert done["subscription"]["status"] == "active"
    assert [e["amount"] for e in store.ledger.values() if e["type"] == "subscription_allowance"] == [600]


def test_a_renewal_or_an_earlier_subscriptions_allowance_is_not_this_checkouts(deps, store):
    deliver(deps, invoice(invoice_id="in_old", billing_reason="subscription_create"), "invoice.paid")
    deliver(deps, invoice(invoice_id="in_cycle", billing_reason="subscription_cycle"), "invoice.paid")
    credited_at = store.ledger["subscription_in_old"]["createdAt"]
    started(store, at=credited_at + timedelta(seconds=1))
    assert plans.plan_checkout(deps, "u1", "cs_plan")["credited"] is False
    started(store, at=datetime.fromtimestamp(T - 60, timezone.utc))
    assert plans.plan_checkout(deps, "u1", "cs_plan")["credited"] is True


# -- the adapter: what the real SDK sends Stripe ------------------------------------------------
class RecordingHTTP(stripe.HTTPClient):
    name = "recording"

    def __init__(self, status: int, body: dict):
        super().__init__()
        self.status, self.body, self.sent = status, body, []

    def request(self, method, url, headers, post_data=None, *, _usage=None):
        self.sent.append((method.upper(), url, post_data or ""))
        return json.dumps(self.body), self.status, {}

    def close(self):
        pass


def adapter(status: int, body: dict) -> tuple[StripePayments, RecordingHTTP]:
    http = RecordingHTTP(status, body)
    stripe.enable_telemetry = False
    return StripePayments(stripe.StripeClient("sk_test_unit_recording", http_client=http,
                                              base_addresses={"api": "http://stripe.unit"})), http


def test_the_adapter_sets_cancel_at_period_end_or_deletes_for_an_immediate_cancel():
    payments, http = adapter(200, subscription(cancel_at_period_end=True))
    answer = payments.cancel_subscription("sub_1")
    assert answer["id"] == "sub_1" and answer["cancel_at_period_end"] is True
    assert http.sent == [("POST", "http://stripe.unit/v1/subscriptions/sub_1", "cancel_at_period_end=true")]
    payments, http = adapter(200, subscription(status="canceled"))
    assert payments.cancel_subscription("sub_1", at_period_end=False)["status"] == "canceled"
    assert http.sent == [("DELETE", "http://stripe.unit/v1/subscriptions/sub_1", "")]


def test_the_adapter_answers_none_for_an_unknown_subscription_and_raises_any_other_refusal():
    missing = {"error": {"type": "invalid_request_error", "code": "resource_missing", "param": "id",
                         "message": "No such subscription: 'sub_x'"}}
    assert adapter(404, missing)[0].cancel_subscription("sub_x") is None
    refused = {"error": {"type": "invalid_request_error", "message": "A canceled subscription can only update "
                         "its cancellation_details and metadata."}}
    with pytest.raises(stripe.InvalidRequestError):
        adapter(400, refused)[0].cancel_subscription("sub_1")
