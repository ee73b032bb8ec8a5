"""Firestore document reads and writes per purchase, counted on the production DocumentTx (the
dict backend counts what Firestore would bill): the inbox write at ingress, then the credit's
one transaction. The figures are in docs/BENCHMARKS.md; a change that adds I/O must update both."""
from __future__ import annotations

from core.handlers.registry import process_stripe_event
from core.services import ingress
from tests.unit.fakes import FakeQueue, checkout_session, event_json, sign

INGRESS = {"writes": 1}  # stripe_events/{id}: created with the payload (a redelivery: one update)
CREDIT = {"transactions": 1, "reads": 3, "writes": 7}
# reads: the payment, the user, the PaymentIntent's link (one get_all);
# writes: payment, user, ledger entry, the lot it bought, link, event record, the outgoing tokens.credited.


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


SPEND = {"transactions": 1, "reads": 2, "writes": 4}
# reads: the keyed entry, the user (one get_all); writes: user, ledger entry, the lot it took from, tokens.debited.
HOLD_THEN_CAPTURE = {"transactions": 2, "reads": 4, "writes": 9}
# reads, each: the hold and the user; writes: placing (user, hold, hold.created), capturing (user, hold, entry,
# the lot, tokens.debited, hold.captured).


def test_a_spend_and_a_hold_capture_cost_one_transaction_each(deps, store):
    from core.services import balance, holds

    balance.grant(deps, "costly", 100, "fund", "g", "test", create_account=True)
    store.uow.counts.clear()
    balance.spend(deps, "costly", 10, "work", "s", "user:costly")
    assert dict(store.uow.counts) == SPEND
    store.uow.counts.clear()
    placed = holds.place(deps, "costly", 20, "h", 60, None, "user:costly")
    holds.capture(deps, "costly", placed["holdId"], 5, "c", "user:costly")
    assert dict(store.uow.counts) == HOLD_THEN_CAPTURE
