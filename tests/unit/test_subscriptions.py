"""Token plans: the catalog's plans, subscription mirroring, one allowance per paid invoice,
failed payments, and the plan's checkout (core/handlers/plans.py, core/services/checkout.py)."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from core import redis_keys
from core.adapters.catalog_file import load_catalog
from core.domain.catalog import Plan
from core.domain.errors import InvalidRequest
from core.services.checkout import RateLimited, start_checkout, start_plan_checkout
from core.domain.errors import MalformedEvent
from core.handlers.registry import process_stripe_event
from core.handlers.registry import handled_types
from tests.unit.fakes import FIXED_NOW, bare, event, make_deps, new_id
from tests.unit.test_purchase_gate import FakeStripe

T = int(FIXED_NOW)
PERIOD_END = T + 30 * 86400


# -- Stripe-shaped builders (newer API versions unless told) ------------------------------
def subscription(user_id="u1", plan="monthly", *, sub_id="sub_1", status="active", metadata=None, **overrides):
    obj = {
        "id": sub_id, "object": "subscription", "status": status, "customer": "cus_1",
        "cancel_at_period_end": False, "currency": "usd",
        "metadata": {"userId": user_id, "planId": plan} if metadata is None else metadata,
        "items": {"object": "list", "data": [{"id": "si_1", "object": "subscription_item",
                                              "current_period_start": T, "current_period_end": PERIOD_END,
                                              "price": {"unit_amount": 2499, "currency": "usd",
                                                        "recurring": {"interval": "month"}}}]},
    }
    obj.update(overrides)
    return obj


def invoice(user_id="u1", plan="monthly", *, invoice_id=None, sub_id="sub_1", amount_paid=2499, currency="usd",
            billing_reason="subscription_cycle", where="parent", metadata=None, **overrides):
    meta = {"userId": user_id, "planId": plan} if metadata is None else metadata
    obj = {
        "id": invoice_id or new_id("in"), "object": "invoice", "status": "paid", "customer": "cus_1",
        "amount_due": 2499, "amount_paid": amount_paid, "currency": currency, "billing_reason": billing_reason,
        "attempt_count": 1, "period_end": T,
        "lines": {"object": "list", "data": [{"id": "il_1", "object": "line_item", "amount": 2499,
                                              "metadata": {}, "period": {"start": T, "end": PERIOD_END}}]},
        "parent": None,
    }
    if where == "parent":
        obj["parent"] = {"type": "subscription_details",
                         "subscription_details": {"subscription": sub_id, "metadata": meta}}
    elif where == "old":
        obj.update(subscription=sub_id, subscription_details={"metadata": meta})
    elif where == "lines":
        obj["subscription"] = sub_id
        obj["lines"]["data"][0]["metadata"] = meta
    obj.update(overrides)
    return obj


def deliver(deps, obj, event_type, *, event_id=None, created=T):
    evt = event(obj, event_type, event_id=event_id)
    evt["created"] = created
    return process_stripe_event(deps, json.dumps(evt))


def allowance_entries(store, user_id="u1"):
    return {k: v for k, v in store.ledger.items() if v["userId"] == user_id and v["type"] == "subscription_allowance"}


# -- catalog ----------------------------------------------------------------------------
def write_catalog(tmp_path, plans):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"currency": "usd", "packages": [
        {"id": "starter", "name": "Starter", "tokens": 50, "priceCents": 499}], "plans": plans}))
    return path


def plan_item(**overrides):
    return {"id": "monthly", "name": "Monthly", "tokensPerPeriod": 600, "priceCents": 2499, "interval": "month",
            **overrides}


def test_default_catalog_has_the_monthly_plan_and_packages_are_unchanged():
    catalog = load_catalog()
    assert catalog.plans == (Plan("monthly", "Monthly", 600, 2499, "month", "usd", rollover_cap=300),)
    assert catalog.plan("monthly") is catalog.plans[0]
    assert catalog.get("monthly") is None and catalog.plan("starter") is None
    assert [p.id for p in catalog.packages] == ["starter", "basic", "pro", "premium"]


@pytest.mark.parametrize("plan_id", ["yearly", "", "Monthly", None, 1, ["monthly"]])
def test_plan_lookup_returns_none_for_unknown_or_non_string_ids(plan_id):
    assert load_catalog().plan(plan_id) is None


def test_a_catalog_without_plans_still_loads(tmp_path):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"currency": "usd", "packages": []}))
    assert load_catalog(path).plans == ()


def test_plan_currency_defaults_to_the_catalog_and_intervals_are_kept(tmp_path):
    catalog = load_catalog(write_catalog(tmp_path, [plan_item(), plan_item(id="weekly", interval="week",
                                                                           currency="EUR")]))
    assert [(p.id, p.interval, p.currency) for p in catalog.plans] == [("monthly", "month", "usd"),
                                                                      ("weekly", "week", "eur")]


@pytest.mark.parametrize("field,value", [
    ("tokensPerPeriod", 0), ("tokensPerPeriod", -1), ("tokensPerPeriod", 6.0), ("tokensPerPeriod", "600"),
    ("tokensPerPeriod", True), ("tokensPerPeriod", None), ("priceCents", 0), ("priceCents", 24.99),
    ("priceCents", "2499"), ("priceCents", False),
])
def test_plans_need_positive_integer_tokens_and_prices(tmp_path, field, value):
    with pytest.raises(ValueError, match="positive integer"):
        load_catalog(write_catalog(tmp_path, [plan_item(**{field: value})]))


@pytest.mark.parametrize("interval", ["monthly", "Month", "quarter", "", None, 1])
def test_plans_need_a_stripe_interval(tmp_path, interval):
    with pytest.raises(ValueError, match="interval"):
        load_catalog(write_catalog(tmp_path, [plan_item(interval=interval)]))


@pytest.mark.parametrize("plan_id", ["", None, 7])
def test_plans_need_a_string_id(tmp_path, plan_id):
    with pytest.raises(ValueError, match="id"):
        load_catalog(write_catalog(tmp_path, [plan_item(id=plan_id)]))


def test_plan_ids_must_be_unique(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        load_catalog(write_catalog(tmp_path, [plan_item(), plan_item(priceCents=999)]))


def test_every_plan_event_type_is_handled():
    assert {"customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
            "invoice.paid", "invoice.payment_failed"} <= handled_types()


# -- customer.subscription.* ------------------------------------------------------------
def test_created_is_mirrored_onto_the_user(deps, store):
    outcome = deliver(deps, subscription(), "customer.subscription.created", event_id="evt_c")
    assert (outcome.status, outcome.user_id) == ("mirrored", "u1")
    assert store.users["u1"]["subscription"] == {"id": "sub_1", "status": "active", "plan": "monthly",
                                                 "currentPeriodEnd": PERIOD_END, "cancelAtPeriodEnd": False,
                                                 "eventCreated": T}
    assert bare(store.events["evt_c"]) == {"type": "customer.subscription.created", "status": "processed",
                                     "outcome": "mirrored", "userId": "u1", "subscriptionId": "sub_1"}
    assert store.ledger == {} and store.alerts == {}


def test_an_older_event_after_a_newer_one_is_ignored(deps, store):
    deliver(deps, subscription(status="incomplete"), "customer.subscription.created", created=T)
    deliver(deps, subscription(cancel_at_period_end=True), "customer.subscription.updated", created=T + 10)
    late = deliver(deps, subscription(status="incomplete"), "customer.subscription.created", event_id="evt_late",
                   created=T + 5)
    assert (late.status, late.reason) == ("skipped", "stale_event")
    stored = store.users["u1"]["subscription"]
    assert (stored["status"], stored["cancelAtPeriodEnd"], stored["eventCreated"]) == ("active", True, T + 10)
    assert store.events["evt_late"]["outcome"] == "stale"


def test_an_event_of_the_same_second_applies_in_arrival_order(deps, store):
    deliver(deps, subscription(status="incomplete"), "customer.subscription.created", created=T)
    deliver(deps, subscription(status="active"), "customer.subscription.updated", created=T)
    assert store.users["u1"]["subscription"]["status"] == "active"


def test_deleted_stores_canceled_whatever_the_object_says(deps, store):
    deliver(deps, subscription(), "customer.subscription.created", created=T)
    outcome = deliver(deps, subscription(status="active"), "customer.subscription.deleted", created=T + 60)
    assert outcome.status == "mirrored"
    assert store.users["u1"]["subscription"]["status"] == "canceled"
    late_update = deliver(deps, subscription(status="active"), "customer.subscription.updated", created=T + 30)
    assert late_update.status == "skipped" and store.users["u1"]["subscription"]["status"] == "canceled"


def test_period_end_is_read_from_the_subscription_on_older_api_versions(deps, store):
    deliver(deps, subscription(current_period_end=PERIOD_END + 1, items={"data": []}), "customer.subscription.created")
    assert store.users["u1"]["subscription"]["currentPeriodEnd"] == PERIOD_END + 1


def test_an_unknown_plan_is_mirrored_without_a_plan(deps, store):
    deliver(deps, subscription(plan="gold"), "customer.subscription.created")
    assert store.users["u1"]["subscription"]["plan"] is None


@pytest.mark.parametrize("metadata,reason", [
    ({"planId": "monthly"}, "missing_user"),
    ({"userId": "", "planId": "monthly"}, "missing_user"),
    ({}, "missing_user"),
    ({"userId": "../admin", "planId": "monthly"}, "invalid_user"),
    ({"userId": "__x__", "planId": "monthly"}, "invalid_user"),
    ({"userId": 42, "planId": "monthly"}, "invalid_user"),
])
@pytest.mark.parametrize("event_type", ["customer.subscription.created", "customer.subscription.deleted"])
def test_subscription_without_a_valid_user_is_rejected_with_an_alert(deps, store, metadata, reason, event_type):
    outcome = deliver(deps, subscription(metadata=metadata), event_type, event_id="evt_bad")
    assert (outcome.status, outcome.reason, outcome.user_id) == ("rejected", reason, None)
    assert store.users == {}
    assert store.events["evt_bad"]["status"] == "rejected" and store.events["evt_bad"]["outcome"] == "rejected"
    alert = store.alerts["subscription_rejected_evt_bad"]
    assert alert["type"] == "subscription_rejected" and alert["details"]["reason"] == reason
    assert alert["details"]["subscriptionId"] == "sub_1" and alert["details"]["stripeEventId"] == "evt_bad"


def test_a_subscription_without_an_id_is_malformed(deps, store):
    with pytest.raises(MalformedEvent):
        deliver(deps, subscription(sub_id=None), "customer.subscription.created")
    assert store.users == {}


# -- invoice.paid -----------------------------------------------------------------------
def test_invoice_paid_credits_the_allowance_once_per_invoice(deps, store):
    inv = invoice(invoice_id="in_1", billing_reason="subscription_create")
    first = deliver(deps, inv, "invoice.paid", event_id="evt_1")
    assert store.events["evt_1"]["outcome"] == "credited"
    again = deliver(deps, inv, "invoice.paid", event_id="evt_1")  # redelivery
    other_event = deliver(deps, inv, "invoice.paid", event_id="evt_2")  # another event for the same invoice
    assert (first.status, first.user_id, first.balance_after) == ("credited", "u1", 600)
    assert again.status == other_event.status == "already_fulfilled"
    assert list(store.ledger) == ["subscription_in_1"]
    entry = store.ledger["subscription_in_1"]
    assert bare(entry) == {"userId": "u1", "type": "subscription_allowance", "amount": 600, "balanceAfter": 600,
                     "invoiceId": "in_1", "subscriptionId": "sub_1", "planId": "monthly", "amountPaid": 2499,
                     "currency": "usd", "billingReason": "subscription_create", "stripeEventId": "evt_1",
                     "source": "webhook", "periodEnd": PERIOD_END, "lots": {"subscription_in_1": 600}}
    user = store.users["u1"]
    assert (user["tokenBalance"], user["totalTokensPurchased"]) == (600, 600)
    assert store.balance("u1") == store.ledger_sum("u1")
    # As for purchases, a redelivery records what it found: the entry already there.
    assert store.events["evt_1"]["outcome"] == "credited"  # its redelivery did not rewrite what it did
    assert store.events["evt_2"]["outcome"] == "already_fulfilled"  # another event for the same invoice
    assert store.alerts == {}


def test_two_invoices_credit_twice(deps, store):
    deliver(deps, invoice(invoice_id="in_1", billing_reason="subscription_create"), "invoice.paid")
    outcome = deliver(deps, invoice(invoice_id="in_2", billing_reason="subscription_cycle"), "invoice.paid")
    assert outcome.balance_after == 1200
    assert sorted(allowance_entries(store)) == ["subscription_in_1", "subscription_in_2"]
    assert store.users["u1"]["totalTokensPurchased"] == 1200


def test_the_allowance_adds_to_a_purchased_balance(deps, store):
    from tests.unit.fakes import checkout_session

    deliver(deps, checkout_session("u1", "starter"), "checkout.session.completed")
    deliver(deps, invoice(), "invoice.paid")
    assert store.balance("u1") == 650 == store.ledger_sum("u1")


@pytest.mark.parametrize("where", ["parent", "old", "lines"])
def test_user_and_plan_are_found_wherever_the_api_version_puts_them(deps, store, where):
    outcome = deliver(deps, invoice(invoice_id=f"in_{where}", where=where), "invoice.paid")
    assert outcome.status == "credited"
    assert store.ledger[f"subscription_in_{where}"]["subscriptionId"] == "sub_1"


def test_an_expanded_subscription_gives_its_id(deps, store):
    inv = invoice(invoice_id="in_x", where="old", subscription={"id": "sub_exp", "object": "subscription"})
    deliver(deps, inv, "invoice.paid")
    assert store.ledger["subscription_in_x"]["subscriptionId"] == "sub_exp"


@pytest.mark.parametrize("overrides,reason", [
    ({"amount_paid": 0}, "amount_mismatch"),
    ({"amount_paid": 999}, "amount_mismatch"),
    ({"amount_paid": 24990}, "amount_mismatch"),
    ({"amount_paid": "2499"}, "amount_mismatch"),
    ({"amount_paid": None}, "amount_mismatch"),
    ({"currency": "eur"}, "currency_mismatch"),
    ({"currency": None}, "currency_mismatch"),
    ({"billing_reason": "manual"}, "unsupported_billing_reason"),
    ({"billing_reason": "subscription_update"}, "unsupported_billing_reason"),
    ({"plan": "gold"}, "unknown_plan"),
    ({"plan": None}, "unknown_plan"),
    ({"user_id": None}, "missing_user"),
    ({"user_id": "a/b"}, "invalid_user"),
])
def test_an_invoice_that_disagrees_with_the_catalog_is_rejected_with_an_alert(deps, store, overrides, reason):
    outcome = deliver(deps, invoice(invoice_id="in_bad", **overrides), "invoice.paid", event_id="evt_bad")
    assert (outcome.status, outcome.reason) == ("rejected", reason)
    assert store.ledger == {} and store.balance("u1") == 0
    record = store.events["evt_bad"]
    assert (record["status"], record["outcome"], record["reason"]) == ("rejected", "rejected", reason)
    alert = store.alerts["subscription_invoice_rejected_in_bad"]
    assert alert["type"] == "subscription_invoice_rejected"
    assert alert["details"]["reason"] == reason and alert["details"]["invoiceId"] == "in_bad"


def test_upper_case_currency_is_accepted(deps, store):
    assert deliver(deps, invoice(currency="USD"), "invoice.paid").status == "credited"


def test_an_invoice_without_a_subscription_is_not_ours(deps, store):
    inv = invoice(invoice_id="in_manual", where="none", billing_reason="manual")
    outcome = deliver(deps, inv, "invoice.paid", event_id="evt_manual")
    assert (outcome.status, outcome.reason) == ("ignored", "not_a_plan_invoice")
    assert store.events["evt_manual"]["outcome"] == "not_a_plan_invoice"
    assert store.ledger == {} and store.alerts == {}


@pytest.mark.parametrize("invoice_id", ["in/1", "", None, "__x__"])
def test_an_invoice_id_that_cannot_name_a_document_is_malformed(deps, store, invoice_id):
    inv = invoice()
    inv["id"] = invoice_id
    with pytest.raises(MalformedEvent):
        deliver(deps, inv, "invoice.paid")
    assert store.ledger == {}


# -- invoice.payment_failed -------------------------------------------------------------
def test_payment_failed_marks_past_due_keeps_the_rest_and_alerts(deps, store):
    deliver(deps, subscription(), "customer.subscription.created", created=T)
    outcome = deliver(deps, invoice(invoice_id="in_f", amount_paid=0), "invoice.payment_failed",
                      event_id="evt_f", created=T + 100)
    assert (outcome.status, outcome.user_id) == ("past_due", "u1")
    assert store.users["u1"]["subscription"] == {"id": "sub_1", "status": "past_due", "plan": "monthly",
                                                 "currentPeriodEnd": PERIOD_END, "cancelAtPeriodEnd": False,
                                                 "eventCreated": T + 100}
    alert = store.alerts["subscription_payment_failed_in_f"]
    assert alert["type"] == "subscription_payment_failed" and alert["userId"] == "u1"
    assert alert["details"]["invoiceId"] == "in_f" and alert["details"]["subscriptionId"] == "sub_1"
    assert store.events["evt_f"]["outcome"] == "past_due"
    assert store.ledger == {}


def test_a_redelivered_payment_failure_writes_the_same_alert(deps, store):
    for _ in range(2):
        deliver(deps, invoice(invoice_id="in_f"), "invoice.payment_failed", event_id="evt_f", created=T + 1)
    assert list(store.alerts) == ["subscription_payment_failed_in_f"]


def test_a_late_payment_failure_does_not_undo_a_recovery(deps, store):
    deliver(deps, subscription(status="active"), "customer.subscription.updated", created=T + 200)
    outcome = deliver(deps, invoice(invoice_id="in_f"), "invoice.payment_failed", created=T + 100)
    assert (outcome.status, outcome.reason) == ("skipped", "stale")
    assert store.users["u1"]["subscription"]["status"] == "active"
    assert "subscription_payment_failed_in_f" in store.alerts  # the failure still happened


def test_a_payment_failure_before_any_subscription_event_stores_what_it_knows(deps, store):
    deliver(deps, invoice(), "invoice.payment_failed", created=T + 5)
    assert store.users["u1"]["subscription"] == {"id": "sub_1", "status": "past_due", "plan": "monthly",
                                                 "eventCreated": T + 5}
    late_created = deliver(deps, subscription(status="incomplete"), "customer.subscription.created", created=T)
    assert late_created.status == "skipped"


def test_a_failure_on_another_subscription_leaves_the_current_one(deps, store):
    deliver(deps, subscription(sub_id="sub_new"), "customer.subscription.created", created=T)
    outcome = deliver(deps, invoice(sub_id="sub_old"), "invoice.payment_failed", created=T + 5)
    assert (outcome.status, outcome.reason) == ("skipped", "other_subscription")
    assert store.users["u1"]["subscription"]["status"] == "active"


def test_a_payment_failure_without_a_valid_user_is_rejected(deps, store):
    outcome = deliver(deps, invoice(invoice_id="in_f", user_id="../x"), "invoice.payment_failed")
    assert (outcome.status, outcome.reason) == ("rejected", "invalid_user")
    assert store.users == {} and "subscription_invoice_rejected_in_f" in store.alerts


# -- the plan's checkout --------------------------------------------------------------
def checkout_deps():
    return replace(make_deps(), stripe=FakeStripe())


def test_plan_checkout_is_a_subscription_with_a_recurring_catalog_price():
    deps = checkout_deps()
    started = start_plan_checkout(deps, "u1", "monthly", "key-1")
    params, options = deps.stripe.sessions.calls[0]
    assert params["mode"] == "subscription" and params["client_reference_id"] == "u1"
    assert params["line_items"] == [{"quantity": 1, "price_data": {
        "currency": "usd", "unit_amount": 2499, "recurring": {"interval": "month"},
        "product_data": {"name": "Monthly: 600 tokens every month"}}}]
    assert params["metadata"] == params["subscription_data"]["metadata"] == {"userId": "u1", "planId": "monthly"}
    assert "payment_intent_data" not in params  # Stripe refuses it in subscription mode
    assert params["success_url"].endswith("/purchase/success?session_id={CHECKOUT_SESSION_ID}")
    assert params["cancel_url"].endswith("/purchase/cancel?plan=monthly")
    assert params["expires_at"] == T + 31 * 60
    assert options == {"idempotency_key": "checkout:u1:key-1"}
    assert deps.redis.zrange(redis_keys.reservations("u1"), 0, -1) == [started.session_id]


@pytest.mark.parametrize("plan", [None, "", "starter", "Monthly", 5, ["monthly"]])
def test_unknown_plans_are_refused_before_anything_is_reserved(plan):
    deps = checkout_deps()
    with pytest.raises(InvalidRequest) as refused:
        start_plan_checkout(deps, "u1", plan)
    assert refused.value.field == "planId"
    assert deps.stripe.sessions.calls == [] and deps.redis.zcard(redis_keys.reservations("u1")) == 0


def test_plans_and_packages_share_the_purchase_gate():
    deps = checkout_deps()
    for _ in range(3):
        start_checkout(deps, "u1", "starter")
    for _ in range(2):
        start_plan_checkout(deps, "u1", "monthly")
    with pytest.raises(RateLimited):
        start_plan_checkout(deps, "u1", "monthly")


def plan_session(user_id="u1", *, session_id="cs_plan", payment_status="paid", status="complete", **overrides):
    obj = {"id": session_id, "object": "checkout.session", "mode": "subscription", "status": status,
           "payment_status": payment_status, "client_reference_id": user_id,
           "metadata": {"userId": user_id, "planId": "monthly"}, "amount_total": 2499, "currency": "usd",
           "payment_intent": None, "subscription": "sub_1"}
    obj.update(overrides)
    return obj


def test_a_paid_plan_checkout_turns_its_place_into_a_purchase_and_credits_nothing(deps, store, redis):
    redis.zadd(redis_keys.reservations("u1"), {"cs_plan": (T + 1800) * 1000})
    outcome = deliver(deps, plan_session(), "checkout.session.completed", event_id="evt_cs")
    assert (outcome.status, outcome.session_id, outcome.user_id) == ("plan_checkout_paid", "cs_plan", "u1")
    assert redis.zcard(redis_keys.reservations("u1")) == 0
    assert redis.zrange(redis_keys.velocity("u1"), 0, -1) == ["cs_plan"]
    assert store.ledger == {} and store.purchases == {} and store.alerts == {}
    assert store.events["evt_cs"]["outcome"] == "plan_checkout_paid"


def test_an_expired_plan_checkout_frees_its_place(deps, store, redis):
    redis.zadd(redis_keys.reservations("u1"), {"cs_plan": (T + 1800) * 1000})
    outcome = deliver(deps, plan_session(payment_status="unpaid", status="expired"), "checkout.session.expired")
    assert outcome.status == "plan_checkout_expired"
    assert redis.zcard(redis_keys.reservations("u1")) == 0 and store.purchases == {}


def test_a_plan_checkout_naming_two_users_is_rejected_with_an_alert(deps, store):
    outcome = deliver(deps, plan_session(client_reference_id="u2"), "checkout.session.completed",
                      event_id="evt_two")
    assert (outcome.status, outcome.reason) == ("rejected", "user_mismatch")
    assert store.alerts["subscription_rejected_evt_two"]["details"]["reason"] == "user_mismatch"


def test_a_subscription_session_that_is_not_a_plan_is_still_a_rejected_purchase(deps, store):
    from tests.unit.fakes import checkout_session

    outcome = deliver(deps, checkout_session("u1", session_id="cs_sub", mode="subscription"),
                      "checkout.session.completed")
    assert (outcome.status, outcome.reason) == ("rejected", "wrong_mode")
