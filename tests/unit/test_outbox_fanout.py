"""The fan-out (core/services/outbox.py) and the messages an endpoint gets (core/domain/outbox.py),
on the dict-backed store: which deliveries, in which order, derived balance events, idempotence,
gaps, the transaction's write cap, the sweep and the kick after a commit."""
from __future__ import annotations

import json

import pytest

from core.domain.deliveries import delivery_id
from core.domain.outbox import (
    BALANCE_DEPLETED, BALANCE_LOW, CREDITED, DEBITED, event_id, messages_for, new_event,
)
from core.outbox_kick import OutboxKick
from core.services import balance, endpoints, outbox
from tests.unit.fake_webhooks import Clock, OutboxQueue, webhook_deps
from tests.unit.fakes import FIXED_NOW


def debit(seq, before, after, user="u1"):
    return new_event(user, seq, DEBITED, FIXED_NOW, entryId=f"e{seq}", entryType="spend", amount=after - before,
                     balanceBefore=before, balanceAfter=after)


# --- messages_for: the domain ------------------------------------------------------------------

def test_an_endpoint_gets_the_event_then_the_balance_events_its_threshold_implies():
    types = {DEBITED, BALANCE_LOW, BALANCE_DEPLETED}
    assert [m.type for m in messages_for(debit(1, 60, 40), types, 50)] == [DEBITED, BALANCE_LOW]
    assert [m.type for m in messages_for(debit(2, 40, 0), types, 50)] == [DEBITED, BALANCE_DEPLETED]
    assert [m.type for m in messages_for(debit(3, 60, 0), types, 50)] == [DEBITED, BALANCE_LOW, BALANCE_DEPLETED]
    assert [m.position for m in messages_for(debit(3, 60, 0), types, 50)] == [12, 13, 14]


def test_balance_low_fires_once_per_downward_crossing_of_the_threshold():
    balances = [100, 60, 55, 45, 30, 70, 40, 10]  # crosses 50 going down twice
    lows = [seq for seq, (b, a) in enumerate(zip(balances, balances[1:]), 1)
            if any(m.type == BALANCE_LOW for m in messages_for(debit(seq, b, a), {BALANCE_LOW}, 50))]
    assert lows == [3, 6]


def test_credits_imply_no_balance_event_and_unsubscribed_types_give_nothing():
    credit = new_event("u1", 1, CREDITED, FIXED_NOW, entryId="g", amount=5, balanceBefore=0, balanceAfter=5)
    assert messages_for(credit, {BALANCE_LOW, BALANCE_DEPLETED}, 10) == []
    assert messages_for(debit(2, 5, 0), {CREDITED}, None) == []
    only_low = messages_for(debit(2, 60, 0), {BALANCE_LOW}, 50)  # not subscribed to depleted, nor to debits
    assert [m.type for m in only_low] == [BALANCE_LOW]


def test_a_message_payload_is_the_standard_webhooks_shape_with_a_stable_id():
    event = debit(7, 60, 40)
    [own, low] = messages_for(event, {DEBITED, BALANCE_LOW}, 50)
    assert own.id == event.id == event_id("u1", 7) and own.payload == event.payload()
    assert own.payload["type"] == DEBITED and own.payload["timestamp"] == "2026-01-01T00:00:00.000Z"
    assert own.payload["data"] == {"userId": "u1", "seq": 7, "entryId": "e7", "entryType": "spend", "amount": -20,
                                   "balanceBefore": 60, "balanceAfter": 40}
    assert low.id == f"{event.id}_low" and low.payload["data"] == {
        "userId": "u1", "seq": 7, "balance": 40, "balanceBefore": 60, "threshold": 50, "causedBy": event.id,
        "causedByType": DEBITED}
    assert messages_for(event, {DEBITED, BALANCE_LOW}, 50) == [own, low]  # the same every time


# --- the fan-out on the store ------------------------------------------------------------------

@pytest.fixture
def clock():
    return Clock(FIXED_NOW)


@pytest.fixture
def wdeps(deps, clock):
    return webhook_deps(deps, clock)


def add(wdeps, url, events, threshold=None):
    return endpoints.add(wdeps, url, events, threshold, "ops")["id"]


def pending(wdeps, endpoint_id):
    return [(d.type, d.seq) for d in wdeps.store.pending_deliveries(endpoint_id, 100)]


def spend(wdeps, uid, amount, key):
    return balance.spend(wdeps, uid, amount, "work", key, f"user:{uid}")


def test_each_event_is_queued_once_for_each_endpoint_subscribed_to_it(wdeps, store):
    tokens = add(wdeps, "https://app.test/tokens", "tokens.credited,tokens.debited")
    low = add(wdeps, "https://app.test/low", "balance.low,balance.depleted", 50)
    add(wdeps, "https://app.test/holds", "hold.created")
    balance.grant(wdeps, "u1", 100, "welcome", "g1", "service", create_account=True)
    spend(wdeps, "u1", 60, "s1")
    spend(wdeps, "u1", 40, "s2")
    queue = OutboxQueue()
    done = outbox.fan_out_account(wdeps, queue, "u1")
    assert done == {"events": 3, "deliveries": 5, "endpoints": sorted([tokens, low])}
    assert pending(wdeps, tokens) == [(CREDITED, 1), (DEBITED, 2), (DEBITED, 3)]
    assert pending(wdeps, low) == [(BALANCE_LOW, 2), (BALANCE_DEPLETED, 3)]
    assert sorted(queue.deliveries) == sorted([(tokens, 0), (low, 0)])
    assert all(e["dispatched"] for e in store.docs["outbox"].values())
    assert store.docs["outbox_cursors"]["u1"]["dispatchedSeq"] == 3
    ids = {d.id for d in wdeps.store.pending_deliveries(tokens, 100)}
    assert ids == {delivery_id(tokens, event_id("u1", seq)) for seq in (1, 2, 3)}
    body = json.loads(wdeps.store.pending_deliveries(tokens, 1)[0].body)
    assert body["id"] == event_id("u1", 1) and body["data"]["balanceAfter"] == 100


def test_a_second_fan_out_queues_nothing_and_writes_nothing(wdeps, store):
    ep = add(wdeps, "https://app.test/a", "tokens.credited")
    balance.grant(wdeps, "u1", 10, "x", "g1", "service", create_account=True)
    outbox.fan_out_account(wdeps, OutboxQueue(), "u1")
    before = json.dumps(store.docs, default=str, sort_keys=True)
    store.uow.counts.clear()
    assert outbox.fan_out_account(wdeps, OutboxQueue(), "u1") == {"events": 0, "deliveries": 0, "endpoints": []}
    assert json.dumps(store.docs, default=str, sort_keys=True) == before
    assert store.uow.counts["writes"] == 0
    assert len(wdeps.store.pending_deliveries(ep, 10)) == 1


def test_disabled_endpoints_get_nothing_new(wdeps):
    ep = add(wdeps, "https://app.test/a", "tokens.credited")
    endpoints.disable(wdeps, ep, "ops")
    balance.grant(wdeps, "u1", 10, "x", "g1", "service", create_account=True)
    assert outbox.fan_out_account(wdeps, OutboxQueue(), "u1")["deliveries"] == 0


def test_the_fan_out_never_passes_an_event_it_cannot_see(wdeps, store):
    ep = add(wdeps, "https://app.test/a", "tokens.credited,tokens.debited")
    balance.grant(wdeps, "u1", 10, "x", "g1", "service", create_account=True)
    spend(wdeps, "u1", 1, "s1")
    spend(wdeps, "u1", 1, "s2")
    hidden = store.docs["outbox"].pop(event_id("u1", 2))  # seq 2 not visible yet
    assert outbox.fan_out_account(wdeps, OutboxQueue(), "u1")["events"] == 1
    assert pending(wdeps, ep) == [(CREDITED, 1)]
    store.docs["outbox"][event_id("u1", 2)] = hidden
    assert outbox.fan_out_account(wdeps, OutboxQueue(), "u1")["events"] == 2
    assert [seq for _, seq in pending(wdeps, ep)] == [1, 2, 3]


def test_many_endpoints_split_the_fan_out_into_transactions_in_order(wdeps, store, monkeypatch):
    monkeypatch.setattr(outbox, "MAX_WRITES", 9)
    eps = [add(wdeps, f"https://app.test/{i}", "tokens.credited,tokens.debited") for i in range(3)]
    balance.grant(wdeps, "u1", 100, "x", "g1", "service", create_account=True)
    for i in range(5):
        spend(wdeps, "u1", 1, f"s{i}")
    store.uow.counts.clear()
    assert outbox.fan_out_account(wdeps, OutboxQueue(), "u1")["deliveries"] == 18
    assert store.uow.counts["transactions"] == 3  # 9 writes each: the cursor, 2 events and their 6 deliveries
    for ep in eps:
        assert [seq for _, seq in pending(wdeps, ep)] == [1, 2, 3, 4, 5, 6]


def test_the_sweep_fans_out_older_events_and_runs_endpoints_not_waiting_out_a_retry(wdeps, clock, store):
    ep = add(wdeps, "https://app.test/a", "tokens.credited")
    waiting = add(wdeps, "https://app.test/b", "tokens.credited")
    store.docs["webhook_endpoints"][waiting]["retryAt"] = clock() + 60
    balance.grant(wdeps, "u1", 10, "x", "g1", "service", create_account=True)
    queue = OutboxQueue()
    assert outbox.sweep(wdeps, queue)["events"] == 0  # younger than the grace: its kick's
    clock.advance(outbox.SWEEP_GRACE_SECONDS + 1)
    totals = outbox.sweep(wdeps, queue)
    assert totals["events"] == 1 and totals["deliveries"] == 2 and totals["endpointsKicked"] == 1
    assert queue.deliveries[-1] == (ep, 0) and (waiting, 0) not in queue.deliveries


def test_a_commit_with_new_events_kicks_their_fan_out_and_the_fan_out_does_not_kick_itself(wdeps, store):
    kicked = []
    store.uow.on_events = kicked.append
    add(wdeps, "https://app.test/a", "tokens.credited")
    balance.grant(wdeps, "u1", 10, "x", "g1", "service", create_account=True)
    balance.grant(wdeps, "u2", 10, "x", "g1", "service", create_account=True)
    spend(wdeps, "u1", 1, "s")
    assert kicked == [{"u1": 1}, {"u2": 1}, {"u1": 2}]  # the account and its last new seq
    outbox.fan_out_account(wdeps, OutboxQueue(), "u1", up_to=2)
    assert len(kicked) == 3


def test_a_kick_that_fails_never_raises_and_rests_before_trying_again():
    now = [0.0]
    calls = []

    def publish(user_id):
        calls.append(user_id)
        raise ConnectionError("broker down")

    kick = OutboxKick(clock=lambda: now[0])
    kick({"u1": 1})  # nothing connected: nothing to do
    kick.connect(lambda user_id, seq: publish(user_id))
    kick({"u1": 3, "u2": 1})
    kick({"u3": 1})
    assert calls == ["u1"]
    now[0] = 31.0
    kick({"u4": 2})
    assert calls == ["u1", "u4"]



def test_the_expiry_job_announces_a_lot_about_to_expire_once_then_expires_it(wdeps, clock, store):
    from core.domain.ledger import keyed_entry_id
    from core.services import expiry

    balance.grant(wdeps, "u1", 30, "promo", "soon", "service", create_account=True, expires_at=int(clock()) + 2 * 86400,
                  source="promo")
    balance.grant(wdeps, "u1", 20, "promo", "later", "service", expires_at=int(clock()) + 4 * 86400, source="promo")
    assert expiry.run(wdeps)["accounts"] == 1
    assert expiry.run(wdeps)["accounts"] == 0  # announced lots are not asked for again
    kinds = lambda: [e["type"] for e in sorted(store.docs["outbox"].values(), key=lambda e: e["seq"])]  # noqa: E731
    assert kinds() == ["tokens.credited", "tokens.credited", "lot.expiring"]
    notice = max(store.docs["outbox"].values(), key=lambda e: e["seq"])["data"]
    assert notice == {"lotId": keyed_entry_id("grant", "u1", "soon"), "source": "promo", "remaining": 30,
                      "expiresAt": int(FIXED_NOW) + 2 * 86400}
    clock.advance(2 * 86400)
    expiry.run(wdeps)  # the first lot expires; the second is now within 3 days: announced
    assert kinds()[3:] == ["lot.expired", "lot.expiring"]


def test_one_fan_out_per_account_at_a_time_a_second_leaves_a_mark(wdeps):
    add(wdeps, "https://app.test/a", "tokens.credited")
    balance.grant(wdeps, "u1", 10, "x", "g1", "service", create_account=True)
    token = wdeps.run_lock.acquire("fanout:u1")
    assert outbox.fan_out_account(wdeps, OutboxQueue(), "u1") == {"busy": True, "events": 0, "deliveries": 0,
                                                                  "endpoints": []}
    wdeps.run_lock.release("fanout:u1", token)
    assert wdeps.run_lock.take_kick("fanout:u1")  # the holder would have run again
    assert outbox.fan_out_account(wdeps, OutboxQueue(), "u1")["events"] == 1


def test_a_kicked_fan_out_of_one_event_costs_one_transaction_of_three_reads(wdeps, store):
    """The kick names the last seq it committed: no query; the cursor, the subscriptions and the
    event in one round trip; writes: the delivery, the event (dispatched) and the cursor."""
    add(wdeps, "https://app.test/a", "tokens.credited,tokens.debited")
    balance.grant(wdeps, "u1", 10, "x", "g1", "service", create_account=True)
    outbox.fan_out_account(wdeps, OutboxQueue(), "u1", up_to=1)
    spend(wdeps, "u1", 1, "s")
    store.uow.counts.clear()
    assert outbox.fan_out_account(wdeps, OutboxQueue(), "u1", up_to=2)["deliveries"] == 1
    assert dict(store.uow.counts) == {"transactions": 1, "reads": 3, "writes": 3}
    store.uow.counts.clear()
    assert outbox.fan_out_account(wdeps, OutboxQueue(), "u1", up_to=2)["events"] == 0  # a second kick: read only
    assert dict(+store.uow.counts) == {"transactions": 1, "reads": 3}


def test_the_subscriptions_document_follows_every_endpoint_change(wdeps, store):
    a = add(wdeps, "https://app.test/a", "tokens.credited,balance.low", 20)
    b = add(wdeps, "https://app.test/b", "hold.created")
    assert store.docs["webhook_subscriptions"]["enabled"]["endpoints"] == {
        a: {"events": ["tokens.credited", "balance.low"], "lowThreshold": 20},
        b: {"events": ["hold.created"], "lowThreshold": None}}
    endpoints.rotate_secret(wdeps, a, "ops")
    endpoints.disable(wdeps, b, "ops")
    assert list(store.docs["webhook_subscriptions"]["enabled"]["endpoints"]) == [a]
