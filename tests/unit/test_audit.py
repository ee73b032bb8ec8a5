"""The ledger audit's checks on plain data."""
from __future__ import annotations

from core.services.audit import check_user


def entry(i, kind, amount, **kw):
    return {"id": f"e{i}", "type": kind, "amount": amount, "_created": 1, "_updated": 1, **kw}


GOOD_ENTRIES = [entry(1, "purchase", 50, checkoutSessionId="cs_1"), entry(2, "grant", 10), entry(3, "spend", -20),
                entry(4, "refund", -5, checkoutSessionId="cs_1")]
GOOD_USER = {"tokenBalance": 35, "totalTokensPurchased": 45, "totalTokensEarned": 10, "totalTokensSpent": 20,
             "debt": 0}
PURCHASES = [{"id": "cs_1", "status": "fulfilled", "userId": "u"}]


def checks(user=GOOD_USER, entries=GOOD_ENTRIES, purchases=PURCHASES):
    return sorted(v.check for v in check_user("u", user, entries, purchases))


def test_a_consistent_account_has_no_violation():
    assert checks() == []


def test_a_tampered_balance_is_reported_with_the_figures():
    [v] = check_user("u", {**GOOD_USER, "tokenBalance": 999999}, GOOD_ENTRIES, PURCHASES)
    assert (v.check, v.expected, v.actual) == ("balance_equals_ledger", 35, 999999)


def test_totals_must_match_their_entry_types():
    assert checks(user={**GOOD_USER, "totalTokensSpent": 0}) == ["totalTokensSpent_equals_entries"]


def test_a_changed_entry_is_reported():
    changed = GOOD_ENTRIES[:2] + [entry(3, "spend", -20, _updated=2)] + GOOD_ENTRIES[3:]
    assert checks(entries=changed) == ["entry_changed"]


def test_signs_and_shapes():
    assert checks(entries=GOOD_ENTRIES + [entry(9, "spend", 5)],
                  user={**GOOD_USER, "tokenBalance": 40, "totalTokensSpent": 15}) == ["entry_sign"]
    assert "entry_shape" in checks(entries=GOOD_ENTRIES + [entry(9, "bonus", 5)])


def test_every_fulfilled_purchase_has_exactly_one_entry_and_no_entry_lacks_its_purchase():
    twice = GOOD_ENTRIES + [entry(5, "purchase", 50, checkoutSessionId="cs_1")]
    user = {**GOOD_USER, "tokenBalance": 85, "totalTokensPurchased": 95}
    assert checks(user=user, entries=twice) == ["fulfilled_purchase_has_one_entry"]
    assert checks(purchases=[]) == ["purchase_entry_has_fulfilled_purchase"]
    missing = [{"id": "cs_2", "status": "fulfilled"}] + PURCHASES
    assert checks(purchases=missing) == ["fulfilled_purchase_has_one_entry"]


def test_a_negative_balance_needs_recorded_debt():
    entries = [entry(1, "purchase", 50, checkoutSessionId="cs_1"), entry(2, "spend", -50),
               entry(3, "refund", -50, checkoutSessionId="cs_1")]
    user = {"tokenBalance": -50, "totalTokensPurchased": 0, "totalTokensSpent": 50, "debt": 0}
    assert checks(user=user, entries=entries) == ["negative_balance_has_debt"]
    assert checks(user={**user, "debt": 50}, entries=entries) == []
