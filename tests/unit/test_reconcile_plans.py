"""Reconciliation sees plans (issue 8 §2.5): a plan's paid Checkout Session is not a missed
purchase; a paid plan invoice whose invoice.paid was lost is found, asked for once, and
credited once; disputes of charges that are not tokenbank's are not findings; every dispute
status of the pinned API version is known."""
from __future__ import annotations

import json

from core.handlers.plans import fulfil_invoice_by_id
from core.handlers.registry import process_stripe_event
from core.services.reconcile import reconcile
from tests.unit.fakes import FakeLedgerStore, FakePayments, checkout_session, event_json, fake_redis, make_deps

NOW = 1_767_225_600


class _Page:
    def __init__(self, data):
        self.data = data

    def to_dict(self):
        return {"object": "list", "data": self.data, "has_more": False, "url": "/v1/x"}


class _Lister:
    def __init__(self, items):
        self.items = items

    def list(self, params):
        return _Page(list(self.items))


class FakeStripe:
    """Stripe's list endpoints as reconciliation reads them (one page each)."""

    def __init__(self, sessions=(), invoices=(), charges=(), disputes=()):
        class V1:
            pass
        self.v1 = V1()
        self.v1.checkout = V1()
        self.v1.checkout.sessions = _Lister(sessions)
        self.v1.invoices, self.v1.charges, self.v1.disputes = _Lister(invoices), _Lister(charges), _Lister(disputes)


class RecordingQueue:
    def __init__(self):
        self.sessions, self.invoices = [], []

    def request_fulfilment(self, session_id, source):
        self.sessions.append(session_id)

    def request_invoice_fulfilment(self, invoice_id, source):
        self.invoices.append(invoice_id)


def plan_invoice(invoice_id="in_lost", user="u1", pi="pi_plan"):
    return {"id": invoice_id, "object": "invoice", "status": "paid", "amount_paid": 2499, "currency": "usd",
            "billing_reason": "subscription_cycle",
            "parent": {"type": "subscription_details",
                       "subscription_details": {"subscription": "sub_1",
                                                "metadata": {"userId": user, "planId": "monthly"}}},
            "payments": {"object": "list", "data": [{"object": "invoice_payment", "invoice": invoice_id, "status": "paid",
                                                      "payment": {"type": "payment_intent", "payment_intent": pi}}]}}


def deps_with(stripe, payments=None):
    store = FakeLedgerStore()
    deps = make_deps(store, fake_redis(), payments=payments or FakePayments(), clock=lambda: NOW)
    return store, deps.__class__(**{**deps.__dict__, "stripe": stripe})


def test_a_paid_plan_checkout_is_not_a_missed_purchase():
    plan_session = {"id": "cs_plan", "mode": "subscription", "status": "complete", "payment_status": "paid",
                    "client_reference_id": "u1", "metadata": {"userId": "u1", "planId": "monthly"}}
    store, deps = deps_with(FakeStripe(sessions=[plan_session]))
    queue = RecordingQueue()
    report = reconcile(deps, queue, max_rps=1000)
    assert report.counts["plan_sessions"] == 1 and "missed_fulfilment" not in report.counts
    assert queue.sessions == [] and report.findings == []


def test_a_lost_plan_invoice_is_found_asked_for_once_and_credited_once():
    payments = FakePayments()
    payments.invoices_by_intent["pi_plan"] = plan_invoice()
    store, deps = deps_with(FakeStripe(invoices=[plan_invoice()]), payments)
    queue = RecordingQueue()
    report = reconcile(deps, queue, max_rps=1000)
    assert queue.invoices == ["in_lost"] and report.counts["missed_allowance"] == 1
    assert reconcile(deps, queue, max_rps=1000).counts["already_requested"] == 1 and queue.invoices == ["in_lost"]
    assert fulfil_invoice_by_id(deps, "in_lost", "reconciliation").status == "credited"
    assert fulfil_invoice_by_id(deps, "in_lost", "reconciliation").status == "already_fulfilled"
    assert store.balance("u1") == 600 and list(store.ledger) == ["subscription_in_lost"]
    assert store.purchases["in_lost"]["status"] == "fulfilled" and store.purchases["in_lost"]["kind"] == "plan_invoice"
    # the late webhook changes nothing either
    event = {"id": "evt_late", "type": "invoice.paid", "created": NOW, "data": {"object": plan_invoice()}}
    assert process_stripe_event(deps, json.dumps(event)).status == "already_fulfilled"
    assert store.balance("u1") == 600
    assert reconcile(deps, RecordingQueue(), max_rps=1000).counts["invoices_in_agreement"] == 1


def test_an_invoice_that_is_not_a_plans_is_not_reconciled():
    other = {**plan_invoice("in_other"), "parent": None, "lines": {"data": []}}
    store, deps = deps_with(FakeStripe(invoices=[other]))
    queue = RecordingQueue()
    assert reconcile(deps, queue, max_rps=1000).counts["not_a_plan_invoice"] == 1 and queue.invoices == []


def test_disputes_of_others_charges_are_not_findings_and_prevented_counts_as_closed():
    payments = FakePayments()
    payments.intents["pi_ours"] = {"id": "pi_ours", "metadata": {"userId": "u1", "packageId": "starter", "tokens": "50"}}
    payments.intents["pi_theirs"] = {"id": "pi_theirs", "metadata": {}}
    disputes = [{"id": "dp_theirs", "payment_intent": "pi_theirs", "status": "needs_response"},
                {"id": "dp_ours", "payment_intent": "pi_ours", "status": "prevented"}]
    store, deps = deps_with(FakeStripe(disputes=disputes), payments)
    session = checkout_session("u1", "starter", session_id="cs_1", payment_intent="pi_ours")
    process_stripe_event(deps, event_json(session))
    for event_type, status in (("charge.dispute.created", "needs_response"), ("charge.dispute.closed", "prevented")):
        obj = {"id": "dp_ours", "object": "dispute", "payment_intent": "pi_ours", "charge": "ch_1", "amount": 499,
               "status": status}
        process_stripe_event(deps, json.dumps({"id": f"evt_{status}", "type": event_type, "created": NOW,
                                               "data": {"object": obj}}))
    assert store.users["u1"]["frozenBy"] == {} and store.balance("u1") == 50  # prevented: closed, nothing taken
    report = reconcile(deps, RecordingQueue(), max_rps=1000)
    assert report.findings == []
    assert report.counts["disputes_not_ours"] == 1 and report.counts["disputes_in_agreement"] == 1


def test_the_audit_finds_a_credited_plan_invoice_in_order():
    from core.services.audit import audit

    payments = FakePayments()
    payments.invoices_by_intent["pi_plan"] = plan_invoice()
    store, deps = deps_with(FakeStripe(), payments)
    fulfil_invoice_by_id(deps, "in_lost", "reconciliation")
    report = audit(deps)
    assert report.users_checked == 1 and report.violations == []
