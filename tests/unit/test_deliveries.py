"""Delivery runs (core/services/deliveries.py) and a delivery's retry schedule (core/domain/deliveries.py)
on the dict-backed store, with a clock the test moves and a sender that answers as scripted:
order, head-of-line waiting, exponential backoff, dead letters after the window, the endpoint's
state, the per-endpoint lock, and replays."""
from __future__ import annotations

import pytest

from core.domain.deliveries import DEAD_LETTERED, DELIVERED, PENDING, new_delivery, retry_delay
from core.domain.errors import UnknownDelivery, UnknownEndpoint
from core.domain.outbox import event_id, messages_for, new_event
from core.services import balance, deliveries, endpoints, outbox
from tests.unit.fake_webhooks import Clock, FakeSender, OutboxQueue, webhook_deps
from tests.unit.fakes import FIXED_NOW

A, B = "https://a.test/hook", "https://b.test/hook"
DAY = 86_400


def test_retry_delays_double_from_the_base_up_to_the_cap():
    assert [retry_delay(n, 5, 3600) for n in range(1, 12)] == [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]
    assert retry_delay(500, 5, 3600) == 3600


def test_a_failure_is_retried_after_its_delay_until_the_window_then_dead_lettered():
    event = new_event("u1", 1, "tokens.credited", FIXED_NOW, amount=5, balanceBefore=0, balanceAfter=5)
    [message] = messages_for(event, {"tokens.credited"}, None)
    d = new_delivery("ep_1", message, FIXED_NOW)
    assert d.due(FIXED_NOW) and d.status == PENDING and d.message_id == event.id
    once = d.failed(FIXED_NOW + 1, 500, "HTTP 500", 3 * DAY, 5, 3600)
    assert once.status == PENDING and once.attempts == 1 and once.next_attempt_at == FIXED_NOW + 6
    assert not once.due(FIXED_NOW + 5) and once.due(FIXED_NOW + 6)
    late = once.failed(FIXED_NOW + 3 * DAY, None, "timeout", 3 * DAY, 5, 3600)
    assert late.status == DEAD_LETTERED and late.attempts == 2 and late.last_error == "timeout"
    again = late.replay(FIXED_NOW + 4 * DAY, "ops")
    assert again.status == PENDING and again.attempts == 0 and again.due(FIXED_NOW + 4 * DAY)
    assert again.failed(FIXED_NOW + 4 * DAY + 1, 500, "x", 3 * DAY, 5, 3600).status == PENDING  # a new window


@pytest.fixture
def clock():
    return Clock(FIXED_NOW)


@pytest.fixture
def sender():
    return FakeSender()


@pytest.fixture
def wdeps(deps, clock, sender):
    return webhook_deps(deps, clock, sender)


def queued(wdeps, uid="u1", spends=3, url=A, events="tokens.credited,tokens.debited"):
    ep = endpoints.add(wdeps, url, events, None, "ops")["id"]
    balance.grant(wdeps, uid, 100, "x", "g1", "service", create_account=True)
    for i in range(spends):
        balance.spend(wdeps, uid, 1, "work", f"s{i}", f"user:{uid}")
    outbox.fan_out_account(wdeps, OutboxQueue(), uid)
    return ep


def seqs(wdeps, ep, status):
    found = {PENDING: wdeps.store.pending_deliveries(ep, 100), DEAD_LETTERED: wdeps.store.dead_deliveries(ep, 100)}
    return [d.seq for d in found[status]]


def test_a_run_sends_the_queue_in_seq_order_signed_with_the_endpoint_secret(wdeps, sender, store):
    ep = queued(wdeps)
    secret = store.docs["webhook_endpoints"][ep]["secrets"][0]["secret"]
    result = deliveries.deliver_endpoint(wdeps, OutboxQueue(), ep)
    assert result == {"status": "idle", DELIVERED: 4, "failed": 0, DEAD_LETTERED: 0}
    assert sender.sent_to(A) == [event_id("u1", seq) for seq in (1, 2, 3, 4)]
    assert all(c.secrets == [secret] for c in sender.calls)
    assert {d["status"] for d in store.docs["deliveries"].values()} == {DELIVERED}


def test_a_failing_head_holds_the_queue_and_is_retried_with_backoff_then_all_goes_in_order(wdeps, sender, clock,
                                                                                          store):
    ep = queued(wdeps)
    sender.answers[A] = [200, 503, None, 500, 200]
    queue = OutboxQueue()
    first = deliveries.deliver_endpoint(wdeps, queue, ep)
    assert first["status"] == "waiting" and first[DELIVERED] == 1 and first["failed"] == 1
    assert queue.deliveries == [(ep, 5.0)]  # the retry, as a countdown task
    assert store.docs["webhook_endpoints"][ep]["retryAt"] == clock() + 5
    assert deliveries.deliver_endpoint(wdeps, queue, ep)["status"] == "waiting"  # not due: nothing sent
    assert len(sender.calls) == 2
    clock.advance(5)
    assert deliveries.deliver_endpoint(wdeps, queue, ep)["failed"] == 1  # no connection; next in 10 s
    clock.advance(10)
    assert deliveries.deliver_endpoint(wdeps, queue, ep)["failed"] == 1  # 500; next in 20 s
    clock.advance(20)
    assert deliveries.deliver_endpoint(wdeps, queue, ep) == {"status": "idle", DELIVERED: 3, "failed": 0,
                                                             DEAD_LETTERED: 0}
    assert sender.sent_to(A) == [event_id("u1", s) for s in (1, 2, 2, 2, 2, 3, 4)]  # same id on every attempt
    assert store.docs["webhook_endpoints"][ep]["retryAt"] is None  # healthy again
    head = store.docs["deliveries"][f"{ep}_{event_id('u1', 2)}"]
    assert head["attempts"] == 4 and head["status"] == DELIVERED and head["lastStatus"] == 200


def test_after_the_window_a_failure_is_dead_lettered_with_an_alert_and_the_endpoint_moves_on(wdeps, sender, clock,
                                                                                               store):
    ep = queued(wdeps, spends=1)
    sender.answers[A] = [500, 500, 200]
    deliveries.deliver_endpoint(wdeps, OutboxQueue(), ep)
    clock.advance(3 * DAY)
    result = deliveries.deliver_endpoint(wdeps, OutboxQueue(), ep)
    assert result == {"status": "idle", DELIVERED: 1, "failed": 0, DEAD_LETTERED: 1}
    assert seqs(wdeps, ep, DEAD_LETTERED) == [1] and seqs(wdeps, ep, PENDING) == []
    alert = store.alerts[f"webhook_dead_letter_{ep}_{event_id('u1', 1)}"]
    assert alert["type"] == "webhook_dead_letter" and alert["details"]["attempts"] == 2
    [failed] = endpoints.failed_deliveries(wdeps, ep, 10)
    assert failed["messageId"] == event_id("u1", 1) and failed["lastError"] == "HTTP 500"


def test_a_replay_puts_a_dead_letter_first_in_the_queue_with_the_same_id(wdeps, sender, clock, store):
    ep = queued(wdeps, spends=1)
    sender.answers[A] = [500]
    deliveries.deliver_endpoint(wdeps, OutboxQueue(), ep)
    clock.advance(3 * DAY)
    deliveries.deliver_endpoint(wdeps, OutboxQueue(), ep)  # both dead-lettered: the endpoint is down
    assert seqs(wdeps, ep, DEAD_LETTERED) == [1, 2]
    sender.answers[A] = [200]
    queue = OutboxQueue()
    assert endpoints.replay(wdeps, queue, None, ep, "ops")["replayed"] == 2
    assert queue.deliveries == [(ep, 0)]
    deliveries.deliver_endpoint(wdeps, queue, ep)
    assert sender.sent_to(A)[-2:] == [event_id("u1", 1), event_id("u1", 2)]
    assert seqs(wdeps, ep, DEAD_LETTERED) == [] and store.docs["ops_log"]
    one = f"{ep}_{event_id('u1', 1)}"
    assert endpoints.replay(wdeps, queue, one, None, "ops")["deliveryIds"] == [one]  # delivered: sent again
    deliveries.deliver_endpoint(wdeps, queue, ep)
    assert sender.sent_to(A)[-1] == event_id("u1", 1)


def test_replay_refuses_unknown_or_pending_deliveries_and_unknown_endpoints(wdeps, sender):
    ep = queued(wdeps, spends=0)
    with pytest.raises(UnknownDelivery):
        endpoints.replay(wdeps, OutboxQueue(), "nope", None, "ops")
    with pytest.raises(UnknownDelivery):
        endpoints.replay(wdeps, OutboxQueue(), f"{ep}_{event_id('u1', 1)}", None, "ops")  # still pending
    with pytest.raises(UnknownEndpoint):
        endpoints.replay(wdeps, OutboxQueue(), None, "ep_nope", "ops")
    with pytest.raises(UnknownEndpoint):
        endpoints.failed_deliveries(wdeps, "a/b", 10)


def test_one_endpoint_failing_never_holds_another(wdeps, sender):
    down = queued(wdeps, spends=2)
    up = endpoints.add(wdeps, B, "tokens.credited,tokens.debited", None, "ops")["id"]
    balance.spend(wdeps, "u1", 1, "work", "later", "user:u1")
    outbox.fan_out_account(wdeps, OutboxQueue(), "u1")
    sender.answers[A] = [None]
    assert deliveries.deliver_endpoint(wdeps, OutboxQueue(), down)["status"] == "waiting"
    assert deliveries.deliver_endpoint(wdeps, OutboxQueue(), up)[DELIVERED] == 1
    assert sender.sent_to(B) == [event_id("u1", 4)]


def test_one_run_per_endpoint_a_second_leaves_a_mark_the_first_takes(wdeps, sender):
    ep = queued(wdeps, spends=0)
    token = wdeps.run_lock.acquire(f"endpoint:{ep}")
    assert deliveries.deliver_endpoint(wdeps, OutboxQueue(), ep) == {"status": "busy"}
    assert sender.calls == []
    wdeps.run_lock.release(f"endpoint:{ep}", token)
    assert wdeps.run_lock.take_kick(f"endpoint:{ep}") is True and wdeps.run_lock.take_kick(f"endpoint:{ep}") is False


def test_a_disabled_endpoint_is_not_delivered_and_keeps_its_queue(wdeps, sender):
    ep = queued(wdeps, spends=0)
    endpoints.disable(wdeps, ep, "ops")
    assert deliveries.deliver_endpoint(wdeps, OutboxQueue(), ep)["status"] == "disabled"
    assert sender.calls == [] and seqs(wdeps, ep, PENDING) == [1]


def test_a_long_queue_is_continued_by_a_fresh_task(wdeps, sender, monkeypatch):
    ep = queued(wdeps, spends=5)
    monkeypatch.setattr(deliveries, "RUN_SECONDS", -1)  # the run's time is up at once
    queue = OutboxQueue()
    assert deliveries.deliver_endpoint(wdeps, queue, ep)["status"] == "continued"
    assert queue.deliveries == [(ep, 0)] and sender.calls == []
