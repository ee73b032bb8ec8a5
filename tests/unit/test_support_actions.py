"""The console's actions: reviewed first (nothing changes), then performed once, each logged in
ops_log with the operator and the reason before it takes effect and completed with its outcome."""
from __future__ import annotations

import pytest

from core import redis_keys
from core.domain.errors import InsufficientFunds, InvalidRequest, KeyConflict
from core.domain.operators import Operator
from core.services import balance, holds
from core.services.dead_letters import dead_letter_event
from core.services.ingress import receive
from core.services.support_actions import ACTIONS, Declined, perform, review
from tests.unit.fake_support import FakeIdentity
from tests.unit.fakes import FakeQueue, checkout_session, event_json, make_deps, sign

OPS = Operator("ops-uid", "ops@example.com")


@pytest.fixture
def deps(store, redis):
    identity = FakeIdentity()
    identity.add("u1", "u1@example.com")
    return make_deps(store, redis, identity=identity)


@pytest.fixture
def funded(deps):
    balance.grant(deps, "u1", 100, "welcome", "grant-1", "service", create_account=True)
    return deps


def log_entries(store, user_id="u1") -> list[dict]:
    return [e for e in store.docs["ops_log"].values() if e.get("userId") == user_id]


def confirm(deps, action, form, queue=None):
    reviewed = review(deps, action, "u1", form)
    return reviewed, perform(deps, queue or FakeQueue(), OPS, action, "u1", {**form, "key": reviewed["key"]})


def test_the_actions_are_the_four_of_the_console():
    assert sorted(ACTIONS) == ["adjust", "release_hold", "replay_event", "reset_limits"]


def test_adjust_reviewed_then_performed_once_with_the_operator_and_reason(funded, store):
    form = {"amount": "-30", "reason": "duplicate goodwill grant"}
    reviewed = review(funded, "adjust", "u1", form)
    assert reviewed["facts"] == {"balance": 100, "available": 100, "balanceAfter": 70}
    assert store.balance("u1") == 100 and log_entries(store) == []  # a review changes nothing
    done = perform(funded, FakeQueue(), OPS, "adjust", "u1", {**form, "key": reviewed["key"]})
    assert done["result"]["balance"] == 70 and done["replayed"] is False
    [entry] = [e for e in store.ledger.values() if e["type"] == "adjustment"]
    assert (entry["amount"], entry["actor"], entry["reason"]) == (-30, "operator:ops@example.com",
                                                                  "duplicate goodwill grant")
    [log] = log_entries(store)
    assert {k: log[k] for k in ("action", "status", "reason", "operator", "operatorUid", "operatorEmail", "amount",
                                "via")} == {
        "action": "adjust", "status": "done", "reason": "duplicate goodwill grant", "operator": "ops@example.com",
        "operatorUid": "ops-uid", "operatorEmail": "ops@example.com", "amount": -30, "via": "console"}
    assert log["result"]["entryId"] == entry_id(store) and "createdAt" in log and "finishedAt" in log
    # The same confirmation again (a double click, a reload): its first answer, nothing more.
    again = perform(funded, FakeQueue(), OPS, "adjust", "u1", {**form, "key": reviewed["key"]})
    assert again["replayed"] is True and again["result"] == done["result"]
    assert store.balance("u1") == 70 and len(log_entries(store)) == 1
    assert store.ledger_sum("u1") == 70


def entry_id(store) -> str:
    return next(k for k, v in store.ledger.items() if v["type"] == "adjustment")


def test_a_refused_adjustment_is_logged_refused_and_changes_nothing(funded, store):
    holds.place(funded, "u1", 80, "job-1")
    with pytest.raises(InsufficientFunds):
        confirm(funded, "adjust", {"amount": "-50", "reason": "take back"})  # holds keep 80 of 100
    assert store.balance("u1") == 100
    [log] = log_entries(store)
    assert log["status"] == "refused" and "below" in log["error"]


def test_a_confirmation_tampered_to_another_amount_conflicts(funded, store):
    reviewed, _ = confirm(funded, "adjust", {"amount": "5", "reason": "sorry"})
    with pytest.raises(KeyConflict):
        perform(funded, FakeQueue(), OPS, "adjust", "u1", {"amount": "500", "reason": "sorry", "key": reviewed["key"]})
    assert store.balance("u1") == 105
    assert sorted(e["status"] for e in log_entries(store)) == ["done", "refused"]


@pytest.mark.parametrize("form, field", [
    ({"amount": "10"}, "reason"),
    ({"amount": "10", "reason": "   "}, "reason"),
    ({"amount": "10", "reason": "x" * 201}, "reason"),
    ({"amount": "0", "reason": "r"}, "amount"),
    ({"amount": "1.5", "reason": "r"}, "amount"),
    ({"amount": "ten", "reason": "r"}, "amount"),
    ({"amount": "", "reason": "r"}, "amount"),
    ({"amount": "1000001", "reason": "r"}, "amount"),
])
def test_bad_input_is_400_and_nothing_is_logged(funded, store, form, field):
    with pytest.raises(InvalidRequest) as refused:
        review(funded, "adjust", "u1", form)
    assert refused.value.field == field
    with pytest.raises(InvalidRequest):
        perform(funded, FakeQueue(), OPS, "adjust", "u1", {**form, "key": "0" * 32})
    assert log_entries(store) == [] and store.balance("u1") == 100


@pytest.mark.parametrize("key", [None, "", "x" * 32, "0" * 31, "../" + "0" * 29])
def test_a_confirmation_needs_the_key_its_review_gave(funded, store, key):
    with pytest.raises(InvalidRequest):
        perform(funded, FakeQueue(), OPS, "adjust", "u1", {"amount": "5", "reason": "r", "key": key})
    assert log_entries(store) == []


def test_unknown_users_and_actions_are_404(funded, store):
    for user in ("nobody", "a/b", "", None):
        with pytest.raises(Declined) as declined:
            review(funded, "adjust", user, {"amount": "5", "reason": "r"})
        assert declined.value.status == 404
    with pytest.raises(Declined) as declined:
        review(funded, "delete_everything", "u1", {"reason": "r"})
    assert declined.value.status == 404


def test_release_a_hold(funded, store):
    hold = holds.place(funded, "u1", 40, "job-1", reason="render")
    assert holds.open_holds(funded, "u1")["holds"][0]["amount"] == 40
    reviewed, done = confirm(funded, "release_hold", {"holdId": hold["holdId"], "reason": "job crashed"})
    assert reviewed["facts"]["amount"] == 40 and reviewed["facts"]["holdReason"] == "render"
    assert done["result"]["status"] == "released" and done["result"]["available"] == 100
    assert store.docs["holds"][hold["holdId"]]["history"][-1]["by"] == "operator:ops@example.com"
    [log] = log_entries(store)
    assert (log["status"], log["holdId"], log["reason"]) == ("done", hold["holdId"], "job crashed")
    with pytest.raises(Declined) as declined:  # nothing left to release
        review(funded, "release_hold", "u1", {"holdId": hold["holdId"], "reason": "again"})
    assert declined.value.status == 409


def test_another_users_hold_is_404(funded, store):
    balance.grant(funded, "u2", 50, "w", "g2", "service", create_account=True)
    theirs = holds.place(funded, "u2", 10, "job-2")
    for hold_id in (theirs["holdId"], "hold_missing", "a/b"):
        with pytest.raises(Declined) as declined:
            review(funded, "release_hold", "u1", {"holdId": hold_id, "reason": "r"})
        assert declined.value.status == 404
    with pytest.raises(Declined):
        perform(funded, FakeQueue(), OPS, "release_hold", "u1", {"holdId": theirs["holdId"], "reason": "r",
                                                                  "key": "a" * 32})
    assert store.docs["holds"][theirs["holdId"]]["status"] == "open"
    assert [e["status"] for e in log_entries(store)] == ["refused"]  # the confirmed attempt is on record


def dead_letter(deps, user_id="u1", event_id="evt_dead") -> str:
    body = event_json(checkout_session(user_id, session_id=f"cs_{event_id}"), event_id=event_id)
    receive(deps, FakeQueue(), body.encode(), sign(body))
    dead_letter_event(deps, event_id, "checkout.session.completed", body, RuntimeError("firestore gave up"), 9,
                      sign(body))
    return event_id


def test_replay_a_dead_letter(funded, store):
    event_id = dead_letter(funded)
    assert store.events[event_id]["userId"] == "u1"  # the inbox names the user from the session
    queue = FakeQueue()
    reviewed, done = confirm(funded, "replay_event", {"eventId": event_id, "reason": "bug fixed"}, queue)
    assert reviewed["facts"]["error"] == "RuntimeError: firestore gave up"
    assert done["result"] == {"eventId": event_id, "replayed": 1}
    assert [e[0] for e in queue.events] == [event_id] and store.events[event_id]["status"] == "received"
    [log] = log_entries(store)
    assert (log["status"], log["eventId"], log["action"]) == ("done", event_id, "replay_event")
    with pytest.raises(Declined) as declined:  # no longer dead-lettered
        review(funded, "replay_event", "u1", {"eventId": event_id, "reason": "again"})
    assert declined.value.status == 409


def test_only_this_users_dead_letters_replay(funded, store):
    other = dead_letter(funded, "u2", "evt_other")
    body = event_json(checkout_session("u1", session_id="cs_ok"), event_id="evt_ok")
    receive(funded, FakeQueue(), body.encode(), sign(body))  # received, never dead-lettered
    with pytest.raises(Declined) as declined:
        review(funded, "replay_event", "u1", {"eventId": other, "reason": "r"})
    assert declined.value.status == 404
    with pytest.raises(Declined) as declined:
        review(funded, "replay_event", "u1", {"eventId": "evt_ok", "reason": "r"})
    assert declined.value.status == 409


def test_reset_purchase_limits(funded, store, redis):
    redis.zadd(redis_keys.velocity("u1"), {"cs_a": 1, "cs_b": 2})
    redis.zadd(redis_keys.reservations("u1"), {"cs_c": 3})
    reviewed, done = confirm(funded, "reset_limits", {"reason": "customer verified by phone"})
    assert reviewed["facts"] == {"paidPurchases": 2, "openCheckouts": 1}
    assert redis.exists(redis_keys.velocity("u1"), redis_keys.reservations("u1")) == 0
    assert done["result"]["before"] == {redis_keys.velocity("u1"): ["cs_a", "cs_b"],
                                        redis_keys.reservations("u1"): ["cs_c"]}
    assert store.ledger_sum("u1") == 100 and len(store.ledger) == 1  # the ledger is untouched
    [log] = log_entries(store)
    assert (log["status"], log["reason"]) == ("done", "customer verified by phone")


def test_a_failure_is_logged_failed_and_propagates(funded, store):
    reviewed = review(funded, "adjust", "u1", {"amount": "5", "reason": "r"})
    store.uow.fail.append(RuntimeError("firestore unavailable"))
    with pytest.raises(RuntimeError, match="firestore unavailable"):
        perform(funded, FakeQueue(), OPS, "adjust", "u1", {"amount": "5", "reason": "r", "key": reviewed["key"]})
    [log] = log_entries(store)
    assert log["status"] == "failed" and "firestore unavailable" in log["error"]
    # Tried again with the same confirmation: it runs now, and the same entry records it.
    done = perform(funded, FakeQueue(), OPS, "adjust", "u1", {"amount": "5", "reason": "r", "key": reviewed["key"]})
    assert done["result"]["balance"] == 105
    assert [e["status"] for e in log_entries(store)] == ["done"]


def test_the_error_propagates_even_when_its_log_cannot_be_completed(funded, store):
    reviewed = review(funded, "adjust", "u1", {"amount": "5", "reason": "r"})
    store.uow.fail.append(RuntimeError("firestore unavailable"))
    store.fail["finish_ops_log"] = RuntimeError("log down too")
    with pytest.raises(RuntimeError, match="firestore unavailable"):
        perform(funded, FakeQueue(), OPS, "adjust", "u1", {"amount": "5", "reason": "r", "key": reviewed["key"]})
    assert [e["status"] for e in log_entries(store)] == ["started"]  # logged before it could take effect


def test_one_confirmation_sent_twice_at_once_runs_once(funded, store):
    reviewed = review(funded, "adjust", "u1", {"amount": "5", "reason": "r"})
    form = {"amount": "5", "reason": "r", "key": reviewed["key"]}
    from core.services.support_actions import log_entry_id
    store.start_ops_log(log_entry_id("adjust", "u1", {"amount": 5}, reviewed["key"]), {"status": "started"})
    with pytest.raises(Declined, match="being carried out"):
        perform(funded, FakeQueue(), OPS, "adjust", "u1", form)
    assert store.balance("u1") == 100
