"""A retry that cannot be published is never acknowledged silently (issue 10).

When Redis is down, Celery's ``self.retry()`` cannot publish the retry and raises the broker's
error. The base task lets it propagate without calling ``give_up`` (no dead letter, no final
status): the event's inbox record stays ``received`` and the sweep enqueues it again."""
from __future__ import annotations

import pytest
from celery import Celery
from redis.exceptions import ConnectionError as RedisConnectionError

from core.config import load_settings
from core.errors import TransientError
from worker.base_task import MoneyTask


@pytest.fixture
def task():
    app = Celery("unit", set_as_current=False)
    app.tokenbank_settings = load_settings({"TOKENBANK_ENV": "test", "TASK_MAX_RETRIES": "3"})

    @app.task(bind=True, base=MoneyTask, name="tokenbank.unit.money")
    def money(self):
        return None

    return money


def test_a_retry_the_broker_cannot_take_propagates_and_gives_nothing_up(task, monkeypatch):
    given_up = []

    def unpublishable_retry(*args, **kwargs):
        raise RedisConnectionError("broker down: the retry could not be published")

    monkeypatch.setattr(task, "retry", unpublishable_retry)
    with pytest.raises(RedisConnectionError):
        task.run_guarded(lambda: (_ for _ in ()).throw(TransientError("firestore busy")),
                         lambda exc, attempts: given_up.append(exc), {"event_id": "evt_1"})
    assert given_up == []  # not dead-lettered, no final status: the inbox record stays "received"


def test_the_last_retry_gives_up_once(task):
    given_up = []
    task.push_request(retries=3)
    try:
        with pytest.raises(TransientError):
            task.run_guarded(lambda: (_ for _ in ()).throw(TransientError("still busy")),
                             lambda exc, attempts: given_up.append(attempts), {"event_id": "evt_1"})
    finally:
        task.pop_request()
    assert given_up == [4]
