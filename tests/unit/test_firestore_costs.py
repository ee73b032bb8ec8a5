"""Firestore document reads and writes per purchase, counted on the production DocumentTx (the
dict backend counts what Firestore would bill): the inbox write at ingress, then the credit's
one transaction. The figures are in docs/BENCHMARKS.md; a change that adds I/O must update both."""
from __future__ import annotations

from core.handlers.registry import process_stripe_event
from core.services import ingress
from tests.unit.fakes import FakeQueue, checkout_session, event_json, sign

INGRESS = {"writes": 1}  # stripe_events/{id}: created with the payload (a redelivery: one update)
CREDIT = {"transactions": 1, "reads": 3, "writes": 6}
# reads: the payment, the user, the PaymentIntent's link (one get_all);
# writes: payment, user, ledger entry, the lot it bought, link, event record.


def test_a_purchase_costs_one_write_at_ingress_and_one_transaction_to_credit(deps, store):
    payload = event_json(checkout_session("costly", "starter"))
    ingress.receive(deps, FakeQueue(), payload.encode(), sign(payload))
    assert dict(store.uow.counts) == INGRESS
    store.uow.counts.clear()
    assert process_stripe_event(deps, payload).status == "credited"
    assert dict(store.uow.counts) == CREDIT


def test_a_redelivery_costs_one_write_and_no_job(deps, store):
    payload = event_json(checkout_session("twice", "starter"))
    ingress.receive(deps, FakeQueue(), payload.encode(), sign(payload))
    process_stripe_event(deps, payload)
    store.uow.counts.clear()
    queue = FakeQueue()
    ingress.receive(deps, queue, payload.encode(), sign(payload))
    assert dict(store.uow.counts) == {"writes": 1} and queue.events == []  # counted; a known event is not enqueued


def test_a_duplicate_job_that_still_runs_writes_nothing(deps, store):
    """A sweep's copy that slipped past the worker's finished-record check: one read-only transaction."""
    payload = event_json(checkout_session("thrice", "starter"))
    process_stripe_event(deps, payload)
    store.uow.counts.clear()
    assert process_stripe_event(deps, payload).status == "already_fulfilled"
    assert dict(+store.uow.counts) == {"transactions": 1, "reads": 3}  # (+ drops zero counts)
