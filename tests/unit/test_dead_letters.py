import json

import pytest
from google.api_core.exceptions import ServiceUnavailable
from redis.exceptions import ConnectionError as RedisConnectionError

from core import redis_keys
from core.services.dead_letters import dead_letter_event

PAYLOAD = '{"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {}}}'


def test_dead_letter_is_stored_on_the_event_record_with_an_alert(deps, store, redis):
    where = dead_letter_event(deps, "evt_1", "checkout.session.completed", PAYLOAD, KeyError("metadata"), 9)
    assert where == "firestore"
    record = store.events["evt_1"]
    assert record["status"] == "dead_lettered"
    assert record["payload"] == PAYLOAD
    assert record["error"] == "KeyError: 'metadata'"
    assert record["attempts"] == 9
    assert store.alerts["dead_letter_evt_1"]["type"] == "event_dead_lettered"
    assert redis.llen(redis_keys.DEAD_LETTER_SPOOL) == 0


def test_the_dead_letter_and_its_alert_are_one_write(deps, store):
    store.fail["add_alert"] = ServiceUnavailable("a separate alert write would fail")
    assert dead_letter_event(deps, "evt_1", "checkout.session.completed", PAYLOAD, RuntimeError("x"), 1) == "firestore"
    assert store.alerts["dead_letter_evt_1"]["details"]["stripeEventId"] == "evt_1"


def test_long_errors_are_cut_to_2000_characters(deps, store):
    dead_letter_event(deps, "evt_1", "checkout.session.completed", PAYLOAD, RuntimeError("x" * 5000), 1)
    assert len(store.events["evt_1"]["error"]) == 2000


def test_when_the_store_fails_the_dead_letter_is_spooled_to_redis(deps, store, redis):
    store.fail["record_event"] = ServiceUnavailable("firestore down")
    where = dead_letter_event(deps, "evt_1", "checkout.session.completed", PAYLOAD, ServiceUnavailable("x"), 9,
                              "t=1,v1=ab")
    assert where == "redis"
    (spooled,) = redis.lrange(redis_keys.DEAD_LETTER_SPOOL, 0, -1)
    assert json.loads(spooled) == {"event_id": "evt_1", "event_type": "checkout.session.completed",
                                   "error": "ServiceUnavailable: 503 x", "attempts": 9, "payload": PAYLOAD,
                                   "signature": "t=1,v1=ab"}  # a replay is verified again by the worker


class DownRedis:
    def lpush(self, *args):
        raise RedisConnectionError("redis down")


def test_when_store_and_redis_both_fail_the_error_propagates(store):
    from tests.unit.fakes import make_deps
    deps = make_deps(store, DownRedis())
    store.fail["record_event"] = ServiceUnavailable("firestore down")
    with pytest.raises(RedisConnectionError):
        dead_letter_event(deps, "evt_1", "checkout.session.completed", PAYLOAD, RuntimeError("boom"), 9)
