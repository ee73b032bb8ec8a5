"""What the console shows: finding a user, everything about their money, the 24-hour dashboard."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from core import redis_keys
from core.domain.errors import InvalidRequest, UnknownUser
from core.handlers.registry import process_stripe_event
from core.services import balance, dashboard, holds
from core.services.dead_letters import dead_letter_event
from core.services.ingress import receive
from core.services.support import LEDGER_PAGE, user_view
from core.services.support_access import find_user
from tests.unit.fake_support import FakeIdentity
from tests.unit.fakes import FIXED_NOW, FakeQueue, checkout_session, event_json, make_deps, sign


@pytest.fixture
def identity():
    people = FakeIdentity()
    people.add("u1", "Customer@Example.com", email_verified=True)
    return people


@pytest.fixture
def deps(store, redis, identity):
    return make_deps(store, redis, identity=identity)


def deliver(deps, obj, event_id, event_type="checkout.session.completed"):
    """Through the inbox (as the webhook does) and then the handler (as the worker does)."""
    body = event_json(obj, event_type, event_id=event_id)
    receive(deps, FakeQueue(), body.encode(), sign(body))
    return process_stripe_event(deps, body)


@pytest.mark.parametrize("query", ["customer@example.com", "CUSTOMER@example.com ", "u1", " u1"])
def test_find_a_user_by_email_or_uid(deps, query):
    assert find_user(deps, query) == "u1"


def test_a_uid_only_firestore_knows_is_found_too(deps):
    balance.grant(deps, "backend-made", 5, "w", "k", "service", create_account=True)
    assert find_user(deps, "backend-made") == "backend-made"


@pytest.mark.parametrize("query, error", [
    ("", InvalidRequest), ("   ", InvalidRequest), (None, InvalidRequest), ("a/b", InvalidRequest),
    ("x" * 400, InvalidRequest), ("tab\there", InvalidRequest),
    ("nobody@example.com", UnknownUser), ("nobody", UnknownUser),
])
def test_find_refuses_what_is_not_a_user(deps, query, error):
    with pytest.raises(error):
        find_user(deps, query)


def test_unknown_users_have_no_view(deps):
    for user in ("nobody", "a/b", "", None, 5):
        with pytest.raises(UnknownUser):
            user_view(deps, user)


def test_the_view_answers_i_paid_and_got_nothing_and_where_did_my_tokens_go(deps, store, redis):
    assert deliver(deps, checkout_session("u1", "basic", session_id="cs_paid"), "evt_paid").status == "credited"
    body = event_json(checkout_session("u1", "pro", session_id="cs_stuck"), event_id="evt_stuck")
    receive(deps, FakeQueue(), body.encode(), sign(body))
    dead_letter_event(deps, "evt_stuck", "checkout.session.completed", body, RuntimeError("gave up"), 9, sign(body))
    balance.spend(deps, "u1", 30, "image render", "spend-1", "user:u1")
    balance.adjust(deps, "u1", -20, "duplicate", "adj-1", "operator:ops@example.com")
    hold = holds.place(deps, "u1", 25, "job-1", reason="video")
    redis.zadd(redis_keys.velocity("u1"), {"cs_paid": FIXED_NOW * 1000})
    store.add_ops_log({"action": "ratelimit_reset", "userId": "u1", "operator": "cli", "createdAt": FIXED_NOW})

    view = user_view(deps, "u1")
    assert view["account"]["email"] == "Customer@Example.com" and view["account"]["support"] is False
    figures = view["balance"]
    assert (figures["tokenBalance"], figures["available"], figures["held"]) == (150, 125, 25)
    [purchase] = view["purchases"]
    assert (purchase["id"], purchase["status"], purchase["tokens"]) == ("cs_paid", "fulfilled", 200)
    assert purchase["paymentIntentId"].startswith("pi_") and purchase["ledgerEntryId"] == "purchase_cs_paid"
    events = {e["id"]: e for e in view["events"]}
    assert events["evt_stuck"]["status"] == "dead_lettered" and events["evt_stuck"]["replayable"] is True
    assert events["evt_paid"]["status"] == "processed" and events["evt_paid"]["replayable"] is False
    assert "payload" not in events["evt_stuck"] and "signature" not in events["evt_stuck"]
    assert [a["id"] for a in view["alerts"]] == ["dead_letter_evt_stuck"]
    ledger = view["ledger"]["entries"]
    assert [(e["type"], e["amount"]) for e in ledger] == [("adjustment", -20), ("spend", -30), ("purchase", 200)]
    assert ledger[0]["actor"] == "operator:ops@example.com" and ledger[0]["reason"] == "duplicate"
    assert ledger[1]["reason"] == "image render" and "requestHash" not in ledger[1]
    assert ledger[2]["stripeEventId"] == "evt_paid"
    [lot] = view["lots"]
    assert (lot["source"], lot["amount"], lot["remaining"], lot["payment_id"]) == ("purchase", 200, 150, "cs_paid")
    [held] = view["holds"]
    assert (held["id"], held["amount"], held["status"], held["releasable"]) == (hold["holdId"], 25, "open", True)
    assert view["limits"]["paidPurchases"] == [{"id": "cs_paid", "at": FIXED_NOW}]
    assert [e["action"] for e in view["opsLog"]] == ["ratelimit_reset"]
    assert view["outgoing"] is None  # the outgoing-events work fills this (another branch)
    [note] = view["attention"]
    assert note.startswith("1 Stripe event(s) dead-lettered") and note.endswith("evt_stuck")


def test_look_at_this_first_names_what_was_paid_and_not_credited(deps, store):
    rejected = checkout_session("u1", "basic", session_id="cs_bad", amount_total=1)  # not the catalog's price
    deliver(deps, rejected, "evt_bad")
    deliver(deps, checkout_session("u1", "starter", session_id="cs_wait", payment_status="unpaid"), "evt_wait")
    store.users.setdefault("u1", {}).update(debt=7, frozenBy={"dp_1": {"amount": 499}})
    notes = user_view(deps, "u1")["attention"]
    assert any(n.startswith("Purchase cs_bad is rejected (amount_mismatch): paid but not credited") for n in notes)
    assert any(n.startswith("Purchase cs_wait is pending") for n in notes)
    assert "Spending is frozen by 1 open dispute(s)" in notes and any("owes 7 tokens" in n for n in notes)


def test_the_ledger_pages_newest_first(deps):
    for i in range(LEDGER_PAGE + 5):
        balance.grant(deps, "u1", 1, f"g{i}", f"k{i}", "service", create_account=True)
    first = user_view(deps, "u1")["ledger"]
    assert len(first["entries"]) == LEDGER_PAGE and first["nextCursor"] == first["entries"][-1]["id"]
    second = user_view(deps, "u1", first["nextCursor"])["ledger"]
    assert len(second["entries"]) == 5 and second["nextCursor"] is None
    assert [e["reason"] for e in second["entries"]] == ["g4", "g3", "g2", "g1", "g0"]
    for bad in ("nope", "a/b"):
        with pytest.raises(InvalidRequest):
            user_view(deps, "u1", bad)


def test_disputes_and_a_frozen_account_show(deps, store):
    deliver(deps, checkout_session("u1", "starter", session_id="cs_d"), "evt_d")
    pi = store.purchases["cs_d"]["paymentIntentId"]
    dispute = {"id": "dp_1", "object": "dispute", "charge": "ch_1", "payment_intent": pi, "amount": 499,
               "reason": "fraudulent", "status": "needs_response", "created": int(FIXED_NOW)}
    deliver(deps, dispute, "evt_dp", "charge.dispute.created")
    view = user_view(deps, "u1")
    assert [d["id"] for d in view["disputes"]] == ["dp_1"] and "dp_1" in view["frozenBy"]
    assert "dispute_dp_1" in [a["id"] for a in view["alerts"]]


def at(hours_ago: float) -> datetime:
    return datetime.fromtimestamp(FIXED_NOW, timezone.utc) - timedelta(hours=hours_ago)


def test_the_dashboard_counts_the_last_24_hours_hour_by_hour(deps, store):
    deps = make_deps(store, clock=lambda: FIXED_NOW + 1800)  # half past midnight: hour 23 is the current one
    events = {"e1": ("processed", 0.2), "e2": ("rejected", 0.3), "e3": ("dead_lettered", 5.1),
              "e4": ("processed", 22.9), "e5": ("processed", 23.1)}  # e5 is before the window
    for event_id, (status, hours_ago) in events.items():
        store.events[event_id] = {"status": status, "type": "checkout.session.completed",
                                  "receivedAt": at(hours_ago), "userId": "u1", "payload": "{}"}
    store.ledger["purchase_cs_x"] = {"userId": "u1", "type": "purchase", "amount": 50, "createdAt": at(0.1)}
    store.ledger["subscription_in_x"] = {"userId": "u1", "type": "subscription_allowance", "amount": 600,
                                         "createdAt": at(2.1)}
    store.ledger["spend_x"] = {"userId": "u1", "type": "spend", "amount": -5, "createdAt": at(0.1)}
    store.alerts["a1"] = {"type": "negative_balance", "userId": "u1", "createdAt": at(1.2)}
    store.alerts["a2"] = {"type": "dispute_opened", "userId": "u1", "createdAt": at(30)}

    board = dashboard.last_24_hours(deps)
    assert board["end"] - board["start"] == 24 * 3600 and board["start"] <= FIXED_NOW + 1800 - 23 * 3600
    series = {s["key"]: s for s in board["series"]}
    assert [s["key"] for s in board["series"]] == ["webhooks", "credits", "rejections", "dead_letters", "alerts"]
    assert {k: s["total"] for k, s in series.items()} == {"webhooks": 4, "credits": 2, "rejections": 1,
                                                          "dead_letters": 1, "alerts": 1}
    assert all(len(s["counts"]) == 24 and s["truncated"] is False for s in series.values())
    # The window is 01:00 yesterday to 01:00 today (FIXED_NOW is midnight): e4 (01:06) is in its first
    # hour, e1 and e2 (23:42 and 23:48) in hour 22, and the current hour (00:00-01:00) is the last.
    assert series["webhooks"]["counts"][0] == 1 and series["webhooks"]["counts"][22] == 2
    assert series["rejections"]["counts"][22] == 1 and series["credits"]["counts"][23] == 0
    assert board["hours"][0] == board["start"] and board["hours"][23] == FIXED_NOW
    assert series["credits"]["tokens"] == 650
    assert board["eventStatuses"] == {"processed": 2, "rejected": 1, "dead_lettered": 1}
    assert board["alertTypes"] == {"negative_balance": 1}
    assert board["deadLetters"] == [{"id": "e3", "type": "checkout.session.completed", "userId": "u1",
                                     "receivedAt": at(5.1).timestamp()}]


def test_the_dashboard_says_when_a_query_reached_its_bound(deps, store, monkeypatch):
    monkeypatch.setattr(dashboard, "MAX_DOCS", 3)
    for i in range(5):
        store.events[f"e{i}"] = {"status": "processed", "type": "t", "receivedAt": at(i)}
    board = dashboard.last_24_hours(deps)
    webhooks = board["series"][0]
    assert webhooks["truncated"] is True and webhooks["total"] == 3 and board["maxDocs"] == 3


def test_every_open_hold_and_lot_is_listed_and_only_the_newest_of_the_rest(store, redis, identity, monkeypatch):
    from core.services import support

    ticks = iter(range(10_000))
    deps = make_deps(store, redis, identity=identity, clock=lambda: FIXED_NOW + next(ticks))
    monkeypatch.setattr(support, "LIST_LIMIT", 2)
    grants = [balance.grant(deps, "u1", 10, f"g{i}", f"g{i}", "service", create_account=True) for i in range(4)]
    balance.spend(deps, "u1", 25, "use", "s1", "user:u1")  # empties the two oldest lots, takes 5 of the third
    placed = [holds.place(deps, "u1", 1, f"h{i}")["holdId"] for i in range(5)]
    for hold_id in placed[1:4]:
        holds.release(deps, "u1", hold_id)
    view = user_view(deps, "u1")
    assert [h["id"] for h in view["holds"]] == [placed[4], placed[0], placed[3]]  # open ones, then the newest
    lots = view["lots"]
    assert [(lot["id"], lot["remaining"]) for lot in lots] == [(grants[3].entry_id, 10), (grants[2].entry_id, 5)]
