"""Firestore document reads and writes per purchase, counted on the production DocumentTx (the
dict backend counts what Firestore would bill): the inbox write at ingress, then the credit's
one transaction. The figures are in docs/BENCHMARKS.md; a change that adds I/O must update both."""
from __future__ import annotations

from core.handlers.registry import process_stripe_event
from core.services import ingress
from tests.unit.fakes import FakeQueue, checkout_session, event_json, sign

INGRESS = {"writes": 1}  # stripe_events/{id}: created with the payload (a redelivery: one update)
CREDIT = {"transactions": 1, "reads": 3, "writes": 5}
# reads: the payment, the user, the PaymentIntent's link (one get_all);
# writes: payment, user, ledger entry, link, event record.


def test_a_purchase_costs_one_write_at_ingress_and_one_transaction_to_credit(deps, store):
    payload = event_json(checkout_session("costly", "starter"))
    ingress.receive(deps, FakeQueue(), payload.encode(), sign(payload))
    assert dict(store.uow.counts) == INGRESS
    store.uow.counts.clear()
    assert process_stripe_event(deps, payload).status == "credited"
    assert dict(store.uow.counts) == CREDIT


def test_a_redelivery_costs_one_write_and_one_read_only_transaction(deps, store):
    payload = event_json(checkout_session("twice", "starter"))
    process_stripe_event(deps, payload)
    store.uow.counts.clear()
    ingress.receive(deps, FakeQueue(), payload.encode(), sign(payload))
    assert process_stripe_event(deps, payload).status == "already_fulfilled"
    # the inbox counts the delivery; the worker reads three documents and writes the event record
    assert dict(store.uow.counts) == {"writes": 2, "transactions": 1, "reads": 3}
