"""Lots in the domain, with a controllable clock: creation, spend order, expiry, rollover,
reversals from the bought lot, debt, holds against expiry, and the migration."""
from __future__ import annotations

import pytest

from core.domain.account import Account
from core.domain.errors import AccountFrozen, InsufficientFunds
from core.domain.ledger import EXPIRY, GRANT, PURCHASE, REFUND, SPEND
from core.domain.lots import LotSpec, migrated_lots
from core.domain.payment import Payment, credit

T0 = 1_800_000_000.0
DAY = 86_400


def credit_lot(account, entry_id, amount, source="grant", expires=None, now=T0, **spec):
    account, entry = account.post(entry_id, GRANT if source in ("grant", "promo") else PURCHASE, amount, {},
                                  now=now, lot=LotSpec(source, expires_at=expires, **spec))
    return account, entry


def spend(account, entry_id, amount, now=T0, **kw):
    return account.post(entry_id, SPEND, -amount, {}, now=now, **kw)


def remaining(account):
    return {k: v.remaining for k, v in account.lots.items()}


def test_every_credit_is_a_lot_and_its_entry_says_so():
    account, entry = credit_lot(Account("u"), "g1", 100, now=T0)
    lot = account.lots["g1"]
    assert (lot.source, lot.amount, lot.remaining, lot.created_at, lot.expires_at) == ("grant", 100, 100, T0, None)
    assert entry.refs["lots"] == {"g1": 100}
    assert account.changed_lots["g1"] == lot


def test_spends_take_soonest_expiry_first_then_promo_before_paid_then_oldest():
    a = Account("u")
    a, _ = credit_lot(a, "paid_old", 10, source="purchase", now=T0)
    a, _ = credit_lot(a, "paid_new", 10, source="purchase", now=T0 + 1)
    a, _ = credit_lot(a, "grant_never", 10, source="grant", now=T0)
    a, _ = credit_lot(a, "paid_soon", 10, source="purchase", expires=T0 + DAY, now=T0 + 2)
    a, _ = credit_lot(a, "promo_soon", 10, source="promo", expires=T0 + DAY, now=T0 + 3)
    a, _ = credit_lot(a, "promo_later", 10, source="promo", expires=T0 + 2 * DAY, now=T0)
    order = []
    for i in range(6):
        before = remaining(a)
        a, entry = spend(a, f"s{i}", 10, now=T0 + 10)
        order.append(next(iter(entry.refs["lots"])))
        assert entry.refs["lots"] == {order[-1]: -10}
        assert set(before) - set(remaining(a)) == {order[-1]}  # an emptied lot leaves the account
    # soonest expiry first; at equal expiry promo before paid; no expiry last: grant before paid, oldest first
    assert order == ["promo_soon", "paid_soon", "promo_later", "grant_never", "paid_old", "paid_new"]
    assert a.balance == 0 and a.lots == {}


def test_a_spend_across_lots_records_each_and_never_uses_expired_tokens():
    a = Account("u")
    a, _ = credit_lot(a, "promo", 30, source="promo", expires=T0 + 60)
    a, _ = credit_lot(a, "paid", 50, source="purchase")
    a, entry = spend(a, "s", 40, now=T0 + 1)
    assert entry.refs["lots"] == {"promo": -30, "paid": -10}
    b, _ = credit_lot(Account("v"), "promo", 30, source="promo", expires=T0 + 60)
    b, _ = credit_lot(b, "paid", 50, source="purchase")
    assert b.available(T0 + 61) == 50  # the promo lot expired: not available, even before the expiry job
    with pytest.raises(InsufficientFunds) as refused:
        spend(b, "s", 60, now=T0 + 61)
    assert refused.value.available == 50


def test_expiry_writes_off_what_is_left_once_and_the_ledger_stays_whole():
    a, _ = credit_lot(Account("u"), "promo", 30, source="promo", expires=T0 + 60)
    a, _ = credit_lot(a, "paid", 50, source="purchase")
    a, _ = spend(a, "s", 10, now=T0 + 1)
    assert a.expire(T0 + 59) == (a, [])  # not yet
    a, entries = a.expire(T0 + 60)
    assert [(e.type, e.amount, e.refs["lotId"], e.refs["lots"]) for e in entries] == [(EXPIRY, -20, "promo",
                                                                                      {"promo": -20})]
    assert a.balance == 50 and a.expired == 20 and remaining(a) == {"paid": 50}
    assert a.changed_lots["promo"].expired == 20 and a.changed_lots["promo"].remaining == 0
    assert a.expire(T0 + 120)[1] == []  # once
    assert a.balance == a.purchased + a.earned - a.spent - a.expired


def test_expiry_keeps_what_open_holds_need_and_takes_it_when_they_end():
    a, _ = credit_lot(Account("u"), "promo", 100, source="promo", expires=T0 + 60)
    a, _ = credit_lot(a, "paid", 30, source="purchase")
    a = a.place_hold("h", 120, T0 + 600, T0)
    assert a.available(T0) == 10
    a, entries = a.expire(T0 + 61)
    assert [e.amount for e in entries] == [-10] and remaining(a) == {"promo": 90, "paid": 30}
    assert a.available(T0 + 61) == 0
    a, entry = a.post("cap", SPEND, -50, {}, now=T0 + 62, hold="h")  # a capture may use the held expired lot
    assert entry.refs["lots"] == {"promo": -50} and a.holds == {}
    a, entries = a.expire(T0 + 63)  # the hold ended: the rest of the expired lot goes
    assert [e.amount for e in entries] == [-40] and remaining(a) == {"paid": 30}
    assert len({e.id for e in entries}) == 1 and entries[0].id.endswith("_50")  # keyed by the expired total


def test_a_plan_lot_rolls_over_up_to_its_cap_and_the_rest_expires():
    spec = dict(plan_id="monthly", rollover_cap=300)
    a, _ = credit_lot(Account("u"), "p1", 600, source="plan", expires=T0 + 30 * DAY, **spec)
    a, _ = spend(a, "s", 100)
    a, entries = a.expire(T0 + 30 * DAY)
    assert [e.amount for e in entries] == [-200]
    lot = a.lots["p1"]
    assert (lot.remaining, lot.rolled_over, lot.expires_at) == (300, True, None)
    a, _ = credit_lot(a, "p2", 600, source="plan", expires=T0 + 60 * DAY, now=T0 + 30 * DAY, **spec)
    a, entries = a.expire(T0 + 60 * DAY)  # the cap counts what already rolled over: nothing more may
    assert [e.amount for e in entries] == [-600] and remaining(a) == {"p1": 300}


def test_a_refund_takes_from_the_lot_its_payment_bought_first_then_the_rest_then_debt():
    payment = Payment("cs_1", tokens=100, amount_paid=1000, currency="usd", user_id="u")
    a, _ = credit_lot(Account("u"), "promo", 50, source="promo", expires=T0 + DAY)
    paid, a, _entries, _ = credit(payment, a, PURCHASE, {}, None, T0)
    lot = a.lots["purchase_cs_1"]
    assert (lot.source, lot.cost_cents, lot.currency, lot.payment_id) == ("purchase", 1000, "usd", "cs_1")
    a, _ = spend(a, "s", 80)  # promo 50, then 30 of the bought lot
    assert remaining(a) == {"purchase_cs_1": 70}
    paid, a, entry = paid.refund(a, 500, {}, T0)
    assert entry.type == REFUND and entry.refs["lots"] == {"purchase_cs_1": -50}
    b, _ = credit_lot(Account("v"), "other", 40, source="grant")
    paid2, b, _, _ = credit(Payment("cs_2", tokens=100, amount_paid=1000, user_id="v"), b, PURCHASE, {}, None, T0)
    b, _ = spend(b, "s", 130)  # grant 40 first, then 90 of the bought lot
    paid2, b, entry = paid2.refund(b, 1000, {}, T0)
    assert entry.amount == -100 and entry.refs["lots"] == {"purchase_cs_2": -10}
    assert b.balance == -90 and b.debt == 90 and b.lots == {}
    b, credit_entry = credit_lot(b, "g2", 100)  # a credit repays the debt first; its lot keeps the rest
    assert credit_entry.refs["lots"] == {"g2": 10} and remaining(b) == {"g2": 10} and b.balance == 10


def test_holds_count_against_available_and_the_frozen_account_refuses_new_ones():
    a, _ = credit_lot(Account("u"), "g", 500)
    a = a.place_hold("h1", 300, T0 + 900, T0)
    assert a.held(T0) == 300 and a.available(T0) == 200
    with pytest.raises(InsufficientFunds) as refused:
        a.place_hold("h2", 201, T0 + 900, T0)
    assert refused.value.available == 200
    with pytest.raises(InsufficientFunds):
        spend(a, "s", 201)
    assert a.available(T0 + 901) == 500  # an expired hold keeps nothing
    frozen = a.freeze("dp_1", {})
    with pytest.raises(AccountFrozen):
        frozen.place_hold("h2", 1, T0 + 900, T0)
    after, entry = frozen.post("cap", SPEND, -300, {}, now=T0, hold="h1")  # a hold placed before still captures
    assert after.balance == 200 and entry.refs["lots"] == {"g": -300}


def test_migration_gives_each_credit_a_lot_newest_first_with_what_the_balance_holds():
    credits = [("purchase_a", "purchase", 100, T0, LotSpec("purchase")),
               ("grant_b", "grant", 50, T0 + 1, LotSpec("grant")),
               ("purchase_c", "purchase", 200, T0 + 2, LotSpec("purchase"))]
    lots = migrated_lots("u", 230, credits)
    assert [(lot.id, lot.remaining, lot.migrated_consumed, lot.migrated) for lot in lots] == [
        ("purchase_a", 0, 100, True), ("grant_b", 30, 20, True), ("purchase_c", 200, 0, True)]
    account = Account("u", balance=230, exists=True).with_lots(lots)
    assert remaining(account) == {"grant_b": 30, "purchase_c": 200}
    assert set(account.changed_lots) == {"purchase_a", "grant_b", "purchase_c"}


def test_a_credit_takes_over_a_hold_from_an_expired_lot_which_then_expires():
    a, _ = credit_lot(Account("u"), "promo", 1, source="promo", expires=T0 + 30)
    a = a.place_hold("h", 1, T0 + 900, T0)
    a, entries = a.expire(T0 + 30)
    assert entries == [] and remaining(a) == {"promo": 1}  # kept: the hold needs it
    a, _ = credit_lot(a, "g", 1, now=T0 + 31)
    # the new token can back the hold, so the expired one is due: nothing is available
    assert a.available(T0 + 31) == 0
    a, entries = a.expire(T0 + 31)
    assert [e.amount for e in entries] == [-1] and remaining(a) == {"g": 1} and a.available(T0 + 31) == 0
