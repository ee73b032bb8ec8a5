"""The official Stripe CLI's triggers against the running system's Stripe sandbox, which
delivers each event, signed, to tokenbank's webhook: every one ends in tokenbank's own
verdict, ``stripe_events/{event id}`` in Firestore, and the ones made tokenbank's (with
``--override``/``--add``) in the right ledger entries.

- Bare, the triggers' objects carry no tokenbank metadata: ``invoice.paid`` and
  ``invoice.payment_failed`` are ``not_a_plan_invoice``, ``customer.subscription.*`` and
  ``checkout.session.completed`` are ``rejected`` (``missing_user``), ``charge.refunded`` and
  ``charge.dispute.created`` are ``not_tokenbank_charge``; nothing is credited.
- ``customer.subscription.created`` with the subscription's metadata and the plan's price: its
  first invoice's ``invoice.paid`` credits the plan's 600 tokens (``subscription_allowance``).
  The ``invoice.paid`` trigger itself cannot: it bills a one-off invoice item
  (``billing_reason=manual``); pointed at that customer and subscription it is a plan's invoice,
  and tokenbank rejects it (``unsupported_billing_reason``), as it must.
- ``charge.refunded`` aimed (``--override refund:payment_intent=...``) at that invoice's or a
  package's PaymentIntent ends in a ``refund`` entry; ``checkout.session.completed`` with a
  package's metadata credits it; ``charge.dispute.created`` with a package's metadata on its
  PaymentIntent freezes the account.

Install the CLI with ``cd sandbox && npm install``.
"""
from __future__ import annotations

import os
import secrets
import subprocess

import pytest
import requests
import stripe
from google.cloud.firestore_v1.base_query import FieldFilter

from devstack.processes import wait_until
from tests.sandbox_support import STRIPE_CLI

pytestmark = pytest.mark.skipif(not STRIPE_CLI.exists(),
                                reason=f"Stripe CLI not installed at {STRIPE_CLI}: run `cd sandbox && npm install`")

PLAN = ("monthly", 600, 2499)  # catalog plan: id, tokens per period, price in usd cents
STARTER = ("starter", 50, 499)
UNFINISHED = ("received", "queued", None)


@pytest.fixture(scope="module")
def cli(system, tmp_path_factory):
    home = tmp_path_factory.mktemp("stripe-cli-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRIPE_")}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "STRIPE_CLI_TELEMETRY_OPTOUT": "1"})

    def run(event: str, *args: str) -> list[dict]:
        """Runs `stripe trigger EVENT ARGS...`; returns the sandbox's events it caused (oldest first)."""
        before = {e["id"] for e in _sandbox_events(system)}
        result = subprocess.run([str(STRIPE_CLI), "trigger", event, *args, "--api-base", system.sandbox_url,
                                 "--api-key", system.settings.stripe_secret_key],
                                env=env, capture_output=True, text=True, timeout=90)
        assert result.returncode == 0 and "Trigger succeeded" in result.stdout, \
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        return [e for e in _sandbox_events(system) if e["id"] not in before]
    return run


@pytest.fixture(scope="module")
def api(system):
    return stripe.StripeClient(system.settings.stripe_secret_key, base_addresses={"api": system.sandbox_url})


def _sandbox_events(system) -> list[dict]:
    return requests.get(f"{system.sandbox_url}/_sandbox/events", timeout=10).json()["data"]


def _event(system, summary: dict) -> dict:
    return requests.get(f"{system.sandbox_url}/v1/events/{summary['id']}", timeout=10,
                        headers={"Authorization": f"Bearer {system.settings.stripe_secret_key}"}).json()


def one(system, events: list[dict], event_type: str, where=lambda obj: True) -> dict:
    """The one event of that type among `events` (the full Event, as delivered)."""
    found = [full for full in (_event(system, e) for e in events if e["type"] == event_type)
             if where(full["data"]["object"])]
    assert len(found) == 1, f"{event_type}: {len(found)} events among {[e['type'] for e in events]}"
    return found[0]


def record(system, event: dict, timeout: float = 45) -> dict:
    """tokenbank's record of the event, once the worker has finished with it."""
    ref = system.deps.store.db.collection("stripe_events").document(event["id"])

    def finished():
        snap = ref.get()
        return snap.to_dict() if snap.exists and snap.to_dict().get("status") not in UNFINISHED else None
    return wait_until(finished, timeout, 0.1, what=f"tokenbank's record of {event['type']} {event['id']}")


def ledger(system, uid: str) -> list[tuple[str, int]]:
    docs = system.deps.store.db.collection("transactions").where(filter=FieldFilter("userId", "==", uid)).stream()
    return sorted((d.to_dict()["type"], d.to_dict()["amount"]) for d in docs)


def user(system, uid: str) -> dict:
    snap = system.deps.store.db.collection("users").document(uid).get()
    return snap.to_dict() if snap.exists else {}


def uid(prefix: str) -> str:
    return f"cli-{prefix}-{secrets.token_hex(4)}"


def plan_overrides(user_id: str) -> list[str]:
    return ["--override", f"subscription:metadata.userId={user_id}", "--override",
            f"subscription:metadata.planId={PLAN[0]}", "--override", f"price:unit_amount={PLAN[2]}"]


def invoice_overrides(customer: str, subscription: str, amount: int) -> list[str]:
    """The CLI's one-off invoice (invoice.paid / invoice.payment_failed) billed to that customer
    and that subscription."""
    return ["--override", f"payment_method:customer={customer}", "--override", f"invoiceitem:customer={customer}",
            "--override", f"invoiceitem:amount={amount}", "--add", f"invoiceitem:subscription={subscription}",
            "--override", f"invoice:customer={customer}", "--add", f"invoice:subscription={subscription}"]


def refund_overrides(payment_intent: str) -> list[str]:
    return ["--skip", "payment_intent", "--override", f"refund:payment_intent={payment_intent}"]


BARE = {  # trigger -> (event whose record is checked, outcome, reason)
    "invoice.paid": ("invoice.paid", "not_a_plan_invoice", None),
    "invoice.payment_failed": ("invoice.payment_failed", "not_a_plan_invoice", None),
    "customer.subscription.created": ("customer.subscription.created", "rejected", "missing_user"),
    "customer.subscription.deleted": ("customer.subscription.deleted", "rejected", "missing_user"),
    "checkout.session.completed": ("checkout.session.completed", "rejected", "missing_user"),
    "charge.refunded": ("charge.refunded", "not_tokenbank_charge", None),
    "charge.dispute.created": ("charge.dispute.created", "not_tokenbank_charge", None),
}


@pytest.mark.parametrize("trigger", sorted(BARE))
def test_a_bare_trigger_ends_in_tokenbanks_verdict_and_credits_nothing(system, cli, trigger):
    entries_before = len(list(system.deps.store.db.collection("transactions").stream()))
    event_type, outcome, reason = BARE[trigger]
    events = cli(trigger)
    got = record(system, one(system, events, event_type))
    if "sessionId" in got:  # a rejected package checkout: the reason is on its purchase record
        got["reason"] = system.deps.store.db.collection("purchases").document(got["sessionId"]).get().get("reason")
    assert (got["type"], got["outcome"], got.get("reason")) == (event_type, outcome, reason)
    if outcome == "not_tokenbank_charge":
        assert got["status"] == "ignored"
    for other in (e for e in events if e["type"] in ("invoice.paid", "checkout.session.completed")):
        assert record(system, _event(system, other))["outcome"] != "credited"
    assert len(list(system.deps.store.db.collection("transactions").stream())) == entries_before


def test_a_plan_subscription_trigger_credits_the_allowance_and_its_refund_takes_it_back(system, cli, api):
    planner = uid("plan")
    events = cli("customer.subscription.created", *plan_overrides(planner))
    created = one(system, events, "customer.subscription.created")
    sub = created["data"]["object"]
    assert record(system, created)["outcome"] == "mirrored"
    paid = one(system, events, "invoice.paid")
    invoice = paid["data"]["object"]
    assert (invoice["billing_reason"], invoice["amount_paid"], invoice["parent"]["subscription_details"]["metadata"]) \
        == ("subscription_create", PLAN[2], {"userId": planner, "planId": PLAN[0]})
    got = record(system, paid)
    assert (got["status"], got["outcome"], got["userId"]) == ("processed", "credited", planner)
    assert ledger(system, planner) == [("subscription_allowance", PLAN[1])]
    assert user(system, planner)["tokenBalance"] == PLAN[1]
    assert user(system, planner)["subscription"]["id"] == sub["id"]

    # The invoice.paid trigger bills a one-off invoice item: aimed at this customer and
    # subscription it is the plan's invoice, but billing_reason manual, which credits nothing.
    events = cli("invoice.paid", *invoice_overrides(sub["customer"], sub["id"], PLAN[2]))
    manual = one(system, events, "invoice.paid")
    assert (manual["data"]["object"]["billing_reason"], manual["data"]["object"]["amount_paid"]) == ("manual", PLAN[2])
    got = record(system, manual)
    assert (got["outcome"], got["reason"]) == ("rejected", "unsupported_billing_reason")
    assert ledger(system, planner) == [("subscription_allowance", PLAN[1])]

    # invoice.payment_failed aimed the same way: the plan's payment failed, the subscription is past_due
    events = cli("invoice.payment_failed", *invoice_overrides(sub["customer"], sub["id"], PLAN[2]))
    got = record(system, one(system, events, "invoice.payment_failed"))
    assert (got["outcome"], got["userId"]) == ("past_due", planner)
    assert user(system, planner)["subscription"]["status"] == "past_due"

    # charge.refunded aimed at the first invoice's PaymentIntent: the allowance is taken back
    [payment] = api.v1.invoice_payments.list(params={"invoice": invoice["id"]}).data
    events = cli("charge.refunded", *refund_overrides(payment.payment.payment_intent))
    refunded = one(system, events, "charge.refunded")
    assert refunded["data"]["object"]["payment_intent"] == payment.payment.payment_intent
    got = record(system, refunded)
    assert (got["outcome"], got["userId"], got["paymentId"]) == ("refunded", planner, invoice["id"])
    assert ledger(system, planner) == [("refund", -PLAN[1]), ("subscription_allowance", PLAN[1])]
    assert user(system, planner)["tokenBalance"] == 0


def test_a_plan_subscription_deleted_trigger_credits_its_invoice_then_mirrors_the_cancellation(system, cli):
    leaver = uid("leaver")
    events = cli("customer.subscription.deleted", *plan_overrides(leaver))
    assert record(system, one(system, events, "invoice.paid"))["outcome"] == "credited"
    got = record(system, one(system, events, "customer.subscription.deleted"))
    assert (got["outcome"], got["userId"]) == ("mirrored", leaver)
    wait_until(lambda: user(system, leaver).get("subscription", {}).get("status") == "canceled", 20, 0.1,
               what="the canceled subscription mirrored")
    assert ledger(system, leaver) == [("subscription_allowance", PLAN[1])]


def test_a_package_checkout_trigger_credits_and_its_refund_and_a_dispute_act_on_tokenbank(system, cli):
    buyer = uid("buyer")
    package, tokens, price = STARTER
    events = cli("checkout.session.completed",
                 "--override", f"checkout_session:metadata.userId={buyer}",
                 "--override", f"checkout_session:metadata.packageId={package}",
                 "--override", f"checkout_session:metadata.tokens={tokens}",
                 "--override", "checkout_session:line_items.0.quantity=1",  # one item (the fixture has 2),
                 "--override", "checkout_session:line_items.0.price=${price:id}",  # the whole line given anew
                 "--override", f"price:unit_amount={price}",
                 "--override", f"payment_page_confirm:expected_amount={price}")
    completed = one(system, events, "checkout.session.completed")
    got = record(system, completed)
    assert (got["outcome"], got["userId"]) == ("credited", buyer)
    assert ledger(system, buyer) == [("purchase", tokens)]

    events = cli("charge.refunded", *refund_overrides(completed["data"]["object"]["payment_intent"]))
    got = record(system, one(system, events, "charge.refunded"))
    assert (got["outcome"], got["userId"], got["paymentId"]) == ("refunded", buyer, completed["data"]["object"]["id"])
    assert ledger(system, buyer) == [("purchase", tokens), ("refund", -tokens)]

    disputer = uid("disputer")
    events = cli("charge.dispute.created", "--override", f"payment_intent:metadata.userId={disputer}",
                 "--override", f"payment_intent:metadata.packageId={package}",
                 "--override", f"payment_intent:metadata.tokens={tokens}")
    dispute = one(system, events, "charge.dispute.created")
    got = record(system, dispute)
    assert (got["outcome"], got["userId"]) == ("frozen", disputer)
    assert dispute["data"]["object"]["id"] in user(system, disputer).get("frozenBy", {})
