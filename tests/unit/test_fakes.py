"""The fake store must keep FirestoreLedgerStore's rules, or every test built on it proves nothing."""
import pytest
from google.api_core.exceptions import AlreadyExists

from core.store import PURCHASE_STATUSES, REPLACEABLE_BY, CreditRequest, EventRef, StatusChange
from tests.unit.fakes import FakeLedgerStore

REF = EventRef("evt_1", "checkout.session.completed")


def credit(store, session_id="cs_1", user_id="u1", tokens=50):
    return store.credit_purchase(CreditRequest(session_id, user_id, "starter", tokens, 499, "usd", "pi_1", REF))


def test_credit_then_credit_again_changes_nothing():
    store = FakeLedgerStore()
    first, second = credit(store), credit(store)
    assert (first.credited, first.balance_after) == (True, 50)
    assert (second.credited, second.user_id, second.balance_after) == (False, "u1", None)
    assert store.balance("u1") == 50 and list(store.ledger) == ["purchase_cs_1"]


def test_existing_ledger_entry_fails_the_credit_without_partial_writes():
    store = FakeLedgerStore()
    store.ledger["purchase_cs_1"] = {"userId": "u1", "amount": 50}
    with pytest.raises(AlreadyExists):
        credit(store)
    assert store.users == {} and store.purchases == {} and store.events == {}


@pytest.mark.parametrize("current", [None, *PURCHASE_STATUSES])
@pytest.mark.parametrize("new", sorted(REPLACEABLE_BY))
def test_status_changes_follow_replaceable_by(current, new):
    store = FakeLedgerStore()
    if current is not None:
        store.purchases["cs_1"] = {"status": current}
    applied = store.change_purchase_status(StatusChange("cs_1", new, "u1", "starter", REF))
    assert applied == (current in REPLACEABLE_BY[new])
    assert store.status("cs_1") == (new if applied else current)


def test_record_event_merges_fields():
    store = FakeLedgerStore()
    store.record_event("evt_1", {"type": "t", "status": "received"})
    store.record_event("evt_1", {"status": "processed"})
    assert store.events["evt_1"] == {"type": "t", "status": "processed"}


@pytest.mark.parametrize("doc_id", ["a/b", "", "..", "__x__"])
def test_ids_firestore_refuses_are_refused(doc_id):
    with pytest.raises(ValueError):
        FakeLedgerStore().record_event(doc_id, {})
