"""The holds service on the dict-backed unit of work: answers, replays, conflicts, expiry, and
what each leaves in the ledger, the account and the hold's record."""
from __future__ import annotations

import pytest

from core.domain.errors import (
    AccountFrozen, HoldConflict, HoldExpired, InsufficientFunds, InvalidRequest, KeyConflict, UnknownHold,
)
from core.services import balance, expiry, holds
from core.services.audit import audit
from tests.unit.fakes import FIXED_NOW, FakeLedgerStore, make_deps


class Clock:
    def __init__(self):
        self.now = FIXED_NOW

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store():
    return FakeLedgerStore()


@pytest.fixture
def deps(store, clock):
    deps = make_deps(store, clock=clock)
    balance.grant(deps, "u", 500, "start", "fund", "test", create_account=True)
    return deps


def test_place_capture_releases_the_rest_and_writes_one_spend(deps, store):
    placed = holds.place(deps, "u", 100, "h1", 60, "render", "user:u")
    assert placed == {"holdId": placed["holdId"], "amount": 100, "expiresAt": int(FIXED_NOW) + 60, "available": 400,
                      "replayed": False}
    assert not any(e["type"] == "spend" for e in store.ledger.values())  # a hold is not in the ledger
    captured = holds.capture(deps, "u", placed["holdId"], 30, "c1", "user:u")
    assert {k: captured[k] for k in ("captured", "released", "balance", "available")} == {
        "captured": 30, "released": 70, "balance": 470, "available": 470}
    entry = store.ledger[captured["entryId"]]
    assert (entry["type"], entry["amount"], entry["holdId"]) == ("spend", -30, placed["holdId"])
    record = store.docs["holds"][placed["holdId"]]
    assert record["status"] == "captured" and [s["action"] for s in record["history"]] == ["placed", "captured"]
    assert store.users["u"]["holds"] == {}
    assert audit(deps).violations == []


def test_replays_answer_the_first_and_other_requests_conflict(deps):
    first = holds.place(deps, "u", 100, "h1", 60, None, "user:u")
    assert holds.place(deps, "u", 100, "h1", 60, None, "user:u") == {**first, "replayed": True}
    with pytest.raises(KeyConflict):
        holds.place(deps, "u", 101, "h1", 60, None, "user:u")
    captured = holds.capture(deps, "u", first["holdId"], 10, "c1", "user:u")
    assert holds.capture(deps, "u", first["holdId"], 10, "c1", "user:u") == {**captured, "replayed": True}
    with pytest.raises(HoldConflict):
        holds.capture(deps, "u", first["holdId"], 10, "c2", "user:u")
    with pytest.raises(HoldConflict):
        holds.capture(deps, "u", first["holdId"], 11, "c1", "user:u")
    with pytest.raises(HoldConflict):
        holds.release(deps, "u", first["holdId"], "user:u")


def test_available_limits_holds_and_spends_and_a_freeze_refuses_new_holds(deps, store):
    holds.place(deps, "u", 400, "h1", 60, None, "user:u")
    with pytest.raises(InsufficientFunds) as refused:
        holds.place(deps, "u", 101, "h2", 60, None, "user:u")
    assert refused.value.available == 100
    with pytest.raises(InsufficientFunds):
        balance.spend(deps, "u", 101, "x", "s1", "user:u")
    assert balance.spend(deps, "u", 100, "x", "s1", "user:u").available == 0
    store.users["u"]["frozenBy"] = {"dp_1": {"status": "needs_response"}}
    with pytest.raises(AccountFrozen):
        holds.place(deps, "u", 1, "h3", 60, None, "user:u")


def test_another_users_hold_is_unknown_and_release_is_idempotent(deps):
    balance.grant(deps, "v", 50, "start", "fund", "test", create_account=True)
    placed = holds.place(deps, "u", 10, "h1", 60, None, "user:u")
    for call in (lambda: holds.capture(deps, "v", placed["holdId"], 1, "c", "user:v"),
                 lambda: holds.release(deps, "v", placed["holdId"], "user:v"),
                 lambda: holds.extend(deps, "v", placed["holdId"], 60, "user:v"),
                 lambda: holds.release(deps, "u", "hold_nope", "user:u"),
                 lambda: holds.release(deps, "u", "not-a-hold", "user:u")):
        with pytest.raises(UnknownHold):
            call()
    assert holds.release(deps, "u", placed["holdId"], "user:u")["status"] == "released"
    again = holds.release(deps, "u", placed["holdId"], "user:u")
    assert again == {"holdId": placed["holdId"], "status": "released", "released": 10, "available": 500}


def test_expiry_releases_holds_and_a_late_capture_is_gone(deps, store, clock):
    placed = holds.place(deps, "u", 100, "h1", 10, None, "user:u")
    assert holds.extend(deps, "u", placed["holdId"], 20, "user:u")["expiresAt"] == int(FIXED_NOW) + 20
    clock.now += 20
    with pytest.raises(HoldExpired):
        holds.capture(deps, "u", placed["holdId"], 1, "c1", "user:u")
    assert holds.open_holds(deps, "u")["holds"] == []
    assert expiry.run(deps) == {"accounts": 1, "holdsReleased": 1, "tokensExpired": 0, "failed": 0}
    assert store.docs["holds"][placed["holdId"]]["status"] == "expired" and store.users["u"]["holds"] == {}
    assert expiry.run(deps)["accounts"] == 0
    with pytest.raises(HoldExpired):
        holds.capture(deps, "u", placed["holdId"], 1, "c1", "user:u")
    assert audit(deps).violations == []


def test_promo_tokens_expire_once_and_the_balance_says_what_is_expiring(deps, store, clock):
    from core.services.accounts import balance as read_balance

    balance.grant(deps, "u", 40, "welcome", "promo", "test", expires_at=int(FIXED_NOW) + 3600, source="promo")
    seen = read_balance(deps, "u")
    assert (seen["tokenBalance"], seen["available"], seen["held"]) == (540, 540, 0)
    assert seen["expiring"] == [{"amount": 40, "expiresAt": int(FIXED_NOW) + 3600}]
    balance.spend(deps, "u", 10, "x", "s1", "user:u")  # the promo lot goes first
    clock.now += 3600
    assert expiry.run(deps)["tokensExpired"] == 30
    assert expiry.run(deps)["tokensExpired"] == 0
    assert [e["amount"] for e in store.ledger.values() if e["type"] == "expiry"] == [-30]
    after = read_balance(deps, "u")
    assert (after["tokenBalance"], after["totalTokensExpired"], after["expiring"]) == (500, 30, [])
    assert audit(deps).violations == []


@pytest.mark.parametrize("kwargs", [dict(expires_at=int(FIXED_NOW)), dict(expires_at="soon"),
                                    dict(expires_at=True), dict(source="purchase"), dict(source=1)])
def test_grants_refuse_a_bad_expiry_or_source(deps, kwargs):
    with pytest.raises(InvalidRequest):
        balance.grant(deps, "u", 1, "x", "g-bad", "test", **kwargs)


@pytest.mark.parametrize("amount", [-1, 100_001, 1.5, "1", True, None])
def test_capture_amount_must_be_a_whole_number_within_the_hold(deps, amount):
    placed = holds.place(deps, "u", 10, "h1", 60, None, "user:u")
    with pytest.raises(InvalidRequest):
        holds.capture(deps, "u", placed["holdId"], amount, "c1", "user:u")
    with pytest.raises(InvalidRequest):
        holds.capture(deps, "u", placed["holdId"], 11, "c1", "user:u")
