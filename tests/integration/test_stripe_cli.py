"""The official Stripe CLI (`stripe trigger EVENT --api-base URL`) against the
local sandbox: each trigger must succeed and end with that event, signed,
delivered to the webhook receiver.

Install the CLI with `cd sandbox && npm install`.
"""

from __future__ import annotations

import os
import subprocess

import pytest
import stripe

from tests.sandbox_support import STRIPE_CLI, TEST_KEY, WebhookReceiver, running_sandbox

SECRET = "whsec_cli_test_secret"


@pytest.fixture(autouse=True)
def _clean():
    """Overrides the integration conftest's autouse cleaner: these tests need neither Redis nor Firestore."""
    yield

pytestmark = pytest.mark.skipif(
    not STRIPE_CLI.exists(),
    reason=f"Stripe CLI not installed at {STRIPE_CLI}: run `cd sandbox && npm install`",
)

TRIGGERS = [
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "charge.refunded",
    "charge.dispute.created",
    "invoice.paid",
    "invoice.payment_failed",
    "customer.subscription.created",
    "customer.subscription.deleted",
]


@pytest.fixture(scope="module")
def receiver():
    rx = WebhookReceiver()
    yield rx
    rx.close()


@pytest.fixture(scope="module")
def sandbox(receiver):
    with running_sandbox(webhook_urls=[receiver.url], secret=SECRET) as sb:
        yield sb


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("stripe-cli-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIPE_")}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "STRIPE_CLI_TELEMETRY_OPTOUT": "1"})
    return env


def _client(sandbox) -> stripe.StripeClient:
    return stripe.StripeClient(TEST_KEY, base_addresses={"api": sandbox.url})


def _invoice_payments(sandbox, invoice_id: str) -> list:
    return _client(sandbox).v1.invoice_payments.list(params={"invoice": invoice_id}).data


def trigger(event: str, sandbox, env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(STRIPE_CLI), "trigger", event, "--api-base", sandbox.url, "--api-key", TEST_KEY],
        env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("event_type", TRIGGERS)
def test_stripe_trigger_delivers_signed_event(event_type, sandbox, receiver, cli_env):
    before = {e["id"] for e in receiver.events_of_type(event_type)}
    result = trigger(event_type, sandbox, cli_env)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}\nsandbox:\n{sandbox.stderr()[-3000:]}"
    assert "Trigger succeeded" in result.stdout

    got = receiver.wait_for_event(event_type, timeout=10, where=lambda e: e["id"] not in before)
    event = stripe.Webhook.construct_event(got.body, got.headers["Stripe-Signature"], SECRET)
    assert event.type == event_type and event.livemode is False
    obj = event.data.object
    if event_type == "checkout.session.completed":
        assert (obj.status, obj.payment_status) == ("complete", "paid")
    elif event_type == "checkout.session.async_payment_succeeded":
        assert obj.payment_status == "paid" and obj.payment_method_types == ["sepa_debit"]
    elif event_type == "checkout.session.async_payment_failed":
        assert obj.payment_status == "unpaid"
    elif event_type == "checkout.session.expired":
        assert obj.status == "expired"
    elif event_type == "charge.refunded":
        assert obj.refunded is True and obj.amount_refunded == obj.amount == 100
    elif event_type == "charge.dispute.created":
        assert obj.object == "dispute" and obj.amount == 100
    elif event_type == "invoice.paid":  # a one-off invoice: an invoice item of 20.00 USD, paid by pm_card_visa
        assert (obj.status, obj.billing_reason, obj.amount_paid, obj.parent) == ("paid", "manual", 2000, None)
        assert [p.status for p in _invoice_payments(sandbox, obj.id)] == ["paid"]
    elif event_type == "invoice.payment_failed":  # the same, paid by pm_card_chargeCustomerFail
        assert (obj.status, obj.attempt_count, obj.amount_paid, obj.amount_due) == ("open", 1, 0, 2000)
    elif event_type == "customer.subscription.created":  # the customer's default card pays the first invoice
        assert (obj.status, obj["items"].data[0].price.unit_amount) == ("active", 1500)
        invoice = _client(sandbox).v1.invoices.retrieve(obj.latest_invoice)
        assert (invoice.status, invoice.billing_reason, invoice.amount_paid) == ("paid", "subscription_create", 1500)
    elif event_type == "customer.subscription.deleted":
        assert obj.status == "canceled" and obj.ended_at and obj.canceled_at

    _, unknown = sandbox.control("GET", "/_sandbox/unknown_requests")
    assert unknown["data"] == [], f"the CLI called routes the sandbox does not know: {unknown['data']}"
