"""The sandbox's subscriptions and invoices, driven by the real `stripe` SDK (StripeClient),
with the signed webhooks it delivers to a receiving HTTP server.

The shapes are those of the pinned API version (2026-10-28.endive): an invoice names its
subscription and that subscription's metadata under `parent.subscription_details`, what paid
it is an `invoice_payment` (listed by invoice or by PaymentIntent, or `expand[]=payments`),
and the subscription's period is on its items.
"""

from __future__ import annotations

import pytest
import requests
import stripe

from tests.sandbox_support import TEST_KEY, WebhookReceiver, running_sandbox

SECRET = "whsec_billing_test_secret"
PLAN = {"userId": "user_plan_1", "planId": "monthly"}
MONTH = 30 * 86400

FIRST_INVOICE_PAID = ["customer.subscription.created", "invoice.created", "invoice.finalized",
                      "payment_intent.created", "invoice.paid", "invoice.payment_succeeded",
                      "invoice_payment.paid", "payment_intent.succeeded", "charge.succeeded"]
FIRST_INVOICE_DECLINED = ["customer.subscription.created", "invoice.created", "invoice.finalized",
                          "payment_intent.created", "charge.failed", "payment_intent.payment_failed",
                          "invoice.payment_failed"]
RENEWAL_PAID = ["customer.subscription.updated", "invoice.created", "invoice.finalized", "payment_intent.created",
                "invoice.paid", "invoice.payment_succeeded", "invoice_payment.paid", "payment_intent.succeeded",
                "charge.succeeded"]


@pytest.fixture(autouse=True)
def _clean():
    """Overrides the integration conftest's autouse cleaner: these tests need neither Redis nor Firestore."""
    yield


@pytest.fixture(scope="module")
def receiver():
    rx = WebhookReceiver()
    yield rx
    rx.close()


@pytest.fixture(scope="module")
def sandbox(receiver):
    with running_sandbox(webhook_urls=[receiver.url], secret=SECRET) as sb:
        yield sb


@pytest.fixture
def client(sandbox):
    return stripe.StripeClient(TEST_KEY, base_addresses={"api": sandbox.url})


class Events:
    """The sandbox's events from now on (oldest first)."""

    def __init__(self, sandbox):
        self.sandbox, self.start = sandbox, len(sandbox.events())

    def types(self) -> list[str]:
        return [e["type"] for e in self.sandbox.events()[self.start:]]


def declared(obj, cls) -> set:
    """Fields of a rendered object that the SDK's class for the pinned version does not declare."""
    return set(obj) - set(cls.__annotations__)


def plan_price(client, amount=2499):
    return client.v1.prices.create(params={"currency": "usd", "unit_amount": amount, "recurring": {"interval": "month"},
                                           "product_data": {"name": "Monthly"}})


def customer_with(client, pm="pm_card_visa"):
    return client.v1.customers.create(params={"email": "plan@example.com", "payment_method": pm,
                                              "invoice_settings": {"default_payment_method": pm}})


def subscribe(client, pm="pm_card_visa", metadata=PLAN, **extra):
    cus = customer_with(client, pm)
    return client.v1.subscriptions.create(params={
        "customer": cus.id, "items": [{"price": plan_price(client).id}], "metadata": metadata,
        "expand": ["latest_invoice.payments"], **extra})


def signed(receiver, event_type, object_id):
    got = receiver.wait_for_event(event_type, where=lambda e: e["data"]["object"]["id"] == object_id)
    return stripe.Webhook.construct_event(got.body, got.headers["Stripe-Signature"], SECRET)


def test_a_subscription_with_a_good_card_pays_its_first_invoice(client, sandbox, receiver):
    events = Events(sandbox)
    sub = subscribe(client)
    item = sub["items"].data[0]
    assert sub.status == "active" and sub.metadata.to_dict() == PLAN
    assert item.current_period_end - item.current_period_start == MONTH
    inv = sub.latest_invoice
    assert (inv.status, inv.billing_reason, inv.amount_due, inv.amount_paid, inv.amount_remaining, inv.currency) == \
        ("paid", "subscription_create", 2499, 2499, 0, "usd")
    assert inv.parent.type == "subscription_details"
    assert inv.parent.subscription_details.subscription == sub.id
    assert inv.parent.subscription_details.metadata.to_dict() == PLAN
    line = inv.lines.data[0]
    assert (line.amount, line.subscription, line.metadata.to_dict()) == (2499, sub.id, PLAN)
    assert (line.period.start, line.period.end) == (item.current_period_start, item.current_period_end)
    assert inv.number and inv.status_transitions.paid_at and inv.attempt_count == 1
    plain = inv.to_dict()
    assert not {"payment_intent", "charge", "subscription"} & set(plain)  # gone since 2025-03-31
    assert declared({k: v for k, v in plain.items() if k != "payments"}, stripe.Invoice) == set()
    assert declared(sub.to_dict(), stripe.Subscription) == set()

    [payment] = inv.payments.data
    assert (payment.object, payment.status, payment.amount_paid, payment.payment.type) == \
        ("invoice_payment", "paid", 2499, "payment_intent")
    assert declared(payment.to_dict(), stripe.InvoicePayment) == set()
    pi = client.v1.payment_intents.retrieve(payment.payment.payment_intent, params={"expand": ["latest_charge"]})
    assert (pi.status, pi.amount, pi.customer, pi.metadata.to_dict()) == ("succeeded", 2499, sub.customer, {})
    assert (pi.latest_charge.status, pi.latest_charge.amount, pi.latest_charge.customer) == \
        ("succeeded", 2499, sub.customer)

    # invoice_payment both ways: by invoice, and by PaymentIntent (how tokenbank finds a charge's invoice)
    by_invoice = client.v1.invoice_payments.list(params={"invoice": inv.id}).data
    by_pi = client.v1.invoice_payments.list(params={"payment": {"type": "payment_intent", "payment_intent": pi.id}}).data
    assert [p.id for p in by_invoice] == [p.id for p in by_pi] == [payment.id]
    assert client.v1.invoice_payments.retrieve(payment.id).invoice == inv.id
    expanded = client.v1.invoices.retrieve(inv.id, params={"expand": ["payments.data.payment.payment_intent"]})
    assert expanded.payments.data[0].payment.payment_intent.id == pi.id
    assert "payments" not in client.v1.invoices.retrieve(inv.id).to_dict()  # includable: only when expanded

    listed = client.v1.invoices.list(params={"status": "paid", "customer": sub.customer,
                                             "created": {"gte": inv.created}, "expand": ["data.payments"]}).data
    assert [i.id for i in listed] == [inv.id] and listed[0].payments.data[0].id == payment.id
    assert [i.id for i in client.v1.invoices.list(params={"subscription": sub.id}).data] == [inv.id]
    assert client.v1.invoices.list(params={"status": "open", "customer": sub.customer}).data == []
    assert [s.id for s in client.v1.subscriptions.list(params={"customer": sub.customer}).data] == [sub.id]

    assert events.types()[-len(FIRST_INVOICE_PAID):] == FIRST_INVOICE_PAID
    paid = signed(receiver, "invoice.paid", inv.id)
    assert paid.data.object.status == "paid" and paid.data.object.parent.subscription_details.metadata.to_dict() == PLAN
    assert "payments" not in paid.data.object.to_dict()
    created = signed(receiver, "customer.subscription.created", sub.id)
    assert created.data.object.status == "active" and created.data.object.latest_invoice == inv.id
    assert signed(receiver, "invoice.created", inv.id).data.object.status == "draft"
    assert signed(receiver, "invoice.finalized", inv.id).data.object.status == "open"
    assert signed(receiver, "invoice_payment.paid", payment.id).data.object.invoice == inv.id


def test_a_declined_first_payment_leaves_it_incomplete_until_the_invoice_is_paid(client, sandbox, receiver):
    with pytest.raises(stripe.CardError):  # a declining card cannot even be attached...
        customer_with(client, "pm_card_chargeDeclined")
    events = Events(sandbox)
    sub = subscribe(client, "pm_card_chargeCustomerFail")  # ...except this one, whose charges fail
    inv = sub.latest_invoice
    assert sub.status == "incomplete"
    assert (inv.status, inv.attempt_count, inv.amount_paid, inv.next_payment_attempt) == ("open", 1, 0, None)
    assert inv.payments.data[0].status == "open"
    pi = client.v1.payment_intents.retrieve(inv.payments.data[0].payment.payment_intent)
    assert pi.status == "requires_payment_method" and pi.last_payment_error.decline_code == "generic_decline"
    assert events.types()[-len(FIRST_INVOICE_DECLINED):] == FIRST_INVOICE_DECLINED
    failed = signed(receiver, "invoice.payment_failed", inv.id)
    assert failed.data.object.parent.subscription_details.metadata.to_dict() == PLAN

    with pytest.raises(stripe.CardError):
        client.v1.invoices.pay(inv.id)  # the default card again
    good = client.v1.payment_methods.attach("pm_card_visa", params={"customer": sub.customer})
    paid = client.v1.invoices.pay(inv.id, params={"payment_method": good.id})
    assert (paid.status, paid.attempt_count, paid.amount_paid) == ("paid", 3, 2499)
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    updated = signed(receiver, "customer.subscription.updated", sub.id)
    assert updated.data.object.status == "active" and updated.data.previous_attributes.status == "incomplete"


def test_the_cycle_control_renews_with_a_new_invoice_paid_or_declined(client, sandbox, receiver):
    sub = subscribe(client)
    first = sub["items"].data[0]
    events = Events(sandbox)
    status, body = sandbox.control("POST", f"/_sandbox/subscriptions/{sub.id}/cycle")
    assert status == 200, body
    inv = client.v1.invoices.retrieve(body["invoice"]["id"], params={"expand": ["payments"]})
    renewed = client.v1.subscriptions.retrieve(sub.id)["items"].data[0]
    assert (renewed.current_period_start, renewed.current_period_end) == \
        (first.current_period_end, first.current_period_end + MONTH)
    assert (inv.status, inv.billing_reason, inv.amount_paid) == ("paid", "subscription_cycle", 2499)
    assert (inv.period_start, inv.period_end) == (first.current_period_start, first.current_period_end)
    assert inv.lines.data[0].period.end == renewed.current_period_end
    assert inv.parent.subscription_details.metadata.to_dict() == PLAN
    assert inv.number != sub.latest_invoice.number
    assert events.types() == RENEWAL_PAID
    assert signed(receiver, "invoice.paid", inv.id).data.object.billing_reason == "subscription_cycle"

    events = Events(sandbox)
    status, body = sandbox.control("POST", f"/_sandbox/subscriptions/{sub.id}/cycle", {"card": "4000000000000002"})
    assert status == 200, body
    declined = body["invoice"]
    assert (declined["status"], declined["attempt_count"], declined["billing_reason"]) == ("open", 1, "subscription_cycle")
    assert declined["next_payment_attempt"] > declined["created"]
    assert body["subscription"]["status"] == "past_due"
    assert events.types()[-3:] == ["payment_intent.payment_failed", "invoice.payment_failed",
                                   "customer.subscription.updated"]
    assert signed(receiver, "invoice.payment_failed", declined["id"]).data.object.attempt_count == 1

    assert client.v1.invoices.pay(declined["id"]).status == "paid"  # the default card pays it
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_cancel_at_period_end_then_the_cycle_ends_the_subscription(client, sandbox, receiver):
    sub = subscribe(client)
    end = sub["items"].data[0].current_period_end
    updated = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert (updated.cancel_at_period_end, updated.cancel_at, updated.status) == (True, end, "active")
    change = signed(receiver, "customer.subscription.updated", sub.id)
    assert change.data.previous_attributes.cancel_at_period_end is False

    events = Events(sandbox)
    status, body = sandbox.control("POST", f"/_sandbox/subscriptions/{sub.id}/cycle")
    assert status == 200 and body["invoice"] is None
    ended = client.v1.subscriptions.retrieve(sub.id)
    assert (ended.status, ended.ended_at, ended.cancellation_details.reason) == ("canceled", end, "cancellation_requested")
    assert events.types() == ["customer.subscription.deleted"]
    assert signed(receiver, "customer.subscription.deleted", sub.id).data.object.status == "canceled"
    assert sandbox.control("POST", f"/_sandbox/subscriptions/{sub.id}/cycle")[0] == 409
    assert sub.id not in [s.id for s in client.v1.subscriptions.list(params={"customer": sub.customer}).data]
    assert [s.id for s in client.v1.subscriptions.list(params={"customer": sub.customer, "status": "canceled"}).data] \
        == [sub.id]

    other = subscribe(client)
    canceled = client.v1.subscriptions.cancel(other.id)  # DELETE: at once
    assert canceled.status == "canceled" and canceled.ended_at == canceled.canceled_at
    assert signed(receiver, "customer.subscription.deleted", other.id).data.object.status == "canceled"


def test_refund_and_dispute_of_an_invoice_charge_as_for_any_payment(client, sandbox, receiver):
    sub = subscribe(client)
    pi = sub.latest_invoice.payments.data[0].payment.payment_intent
    refund = client.v1.refunds.create(params={"payment_intent": pi})
    charge = signed(receiver, "charge.refunded", refund.charge).data.object
    assert (charge.payment_intent, charge.amount_refunded, charge.refunded) == (pi, 2499, True)
    assert client.v1.invoices.retrieve(sub.latest_invoice.id).status == "paid"

    disputed = subscribe(client, "pm_card_createDispute")
    dpi = disputed.latest_invoice.payments.data[0].payment.payment_intent
    assert disputed.status == "active" and disputed.latest_invoice.status == "paid"
    [dispute] = client.v1.disputes.list(params={"payment_intent": dpi}).data
    assert signed(receiver, "charge.dispute.created", dispute.id).data.object.payment_intent == dpi
    assert sandbox.control("POST", f"/_sandbox/disputes/{dispute.id}/close", {"status": "lost"})[0] == 200
    assert signed(receiver, "charge.dispute.closed", dispute.id).data.object.status == "lost"


def test_a_plan_checkout_paid_on_the_hosted_page_makes_the_same_invoice_chain(client, sandbox, receiver):
    cs = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": plan_price(client).id, "quantity": 1}],
        "client_reference_id": PLAN["userId"], "metadata": PLAN, "subscription_data": {"metadata": PLAN},
        "success_url": "https://tokenbank.test/ok?session_id={CHECKOUT_SESSION_ID}"})
    events = Events(sandbox)
    form = requests.post(cs.url, data={"email": "plan@example.com", "card_number": "4242 4242 4242 4242",
                                       "method": "card"}, allow_redirects=False, timeout=10)
    assert form.status_code == 303
    done = client.v1.checkout.sessions.retrieve(cs.id, params={"expand": ["subscription"]})
    assert (done.status, done.payment_status, done.payment_intent) == ("complete", "paid", None)
    inv = client.v1.invoices.retrieve(done.invoice, params={"expand": ["payments"]})
    assert done.subscription.status == "active" and done.subscription.latest_invoice == inv.id
    assert (inv.status, inv.billing_reason, inv.amount_paid, inv.customer) == \
        ("paid", "subscription_create", 2499, done.customer)
    assert inv.parent.subscription_details.metadata.to_dict() == PLAN
    pi = inv.payments.data[0].payment.payment_intent
    assert [p.invoice for p in client.v1.invoice_payments.list(
        params={"payment": {"type": "payment_intent", "payment_intent": pi}}).data] == [inv.id]
    assert events.types() == [  # the session's PaymentIntent exists before the invoice does
        "payment_intent.created", "checkout.session.completed", "customer.created", "customer.subscription.created",
        "invoice.created", "invoice.finalized", "invoice.paid", "invoice.payment_succeeded", "invoice_payment.paid",
        "payment_intent.succeeded", "charge.succeeded"]
    assert signed(receiver, "invoice.paid", inv.id).data.object.parent.subscription_details.subscription == \
        done.subscription.id


def test_a_plan_checkout_paid_by_bank_debit_leaves_the_invoice_open_until_it_settles(client, sandbox, receiver):
    cs = client.v1.checkout.sessions.create(params={
        "mode": "subscription", "line_items": [{"price": plan_price(client).id, "quantity": 1}],
        "subscription_data": {"metadata": PLAN}})
    status, body = sandbox.control("POST", f"/_sandbox/checkout/{cs.id}/pay", {"method": "delayed"})
    assert status == 200, body
    inv = client.v1.invoices.retrieve(body["session"]["invoice"])
    assert inv.status == "open" and body["session"]["payment_status"] == "unpaid"
    assert sandbox.control("POST", f"/_sandbox/checkout/{cs.id}/async_result", {"succeeded": True})[0] == 200
    assert client.v1.invoices.retrieve(inv.id).status == "paid"
    assert signed(receiver, "invoice.paid", inv.id).data.object.amount_paid == 2499


def test_a_subscription_paid_by_sepa_debit_is_active_and_its_invoice_paid_once_the_debit_settles(client, receiver):
    cus = client.v1.customers.create(params={"email": "sepa@example.com"})
    pm = client.v1.payment_methods.create(params={"type": "sepa_debit", "sepa_debit": {"iban": "DE89370400440532013000"},
                                                  "billing_details": {"name": "S", "email": "sepa@example.com"}})
    client.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": plan_price(client).id}],
                                                 "default_payment_method": pm.id, "metadata": PLAN})
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    assert sub.status == "active" and inv.status == "open"
    assert signed(receiver, "invoice.paid", inv.id).data.object.status == "paid"  # settled after a moment
    assert client.v1.invoices.retrieve(inv.id).amount_paid == 2499
