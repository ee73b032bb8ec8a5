import pytest

from core import redis_keys
from core.errors import TransientError
from core.adapters.user_lock import user_lock


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def lock(redis, time=None, user="u1", wait=1.0, ttl=5000):
    time = time or FakeTime()
    return user_lock(redis, user, ttl, wait, sleep=time.sleep, clock=time.clock)


def test_lock_is_held_inside_and_released_after(redis):
    key = redis_keys.user_lock("u1")
    with lock(redis):
        assert redis.get(key) is not None
        assert 0 < redis.pttl(key) <= 5000
    assert redis.get(key) is None


def test_lock_is_released_when_the_body_raises(redis):
    with pytest.raises(RuntimeError):
        with lock(redis):
            raise RuntimeError("credit failed")
    assert redis.get(redis_keys.user_lock("u1")) is None


def test_second_holder_waits_then_gets_the_lock_once_it_is_free(redis):
    key = redis_keys.user_lock("u1")
    redis.set(key, "other-holder")
    time = FakeTime()

    def sleep(seconds):
        time.sleep(seconds)
        if len(time.sleeps) == 3:
            redis.delete(key)  # the first holder finishes
    entered = []
    with user_lock(redis, "u1", 5000, 1.0, sleep=sleep, clock=time.clock):
        entered.append(redis.get(key))
    assert len(time.sleeps) == 3
    assert entered and entered[0] != "other-holder"


def test_waiting_longer_than_wait_seconds_raises_transient_error_without_real_sleeping(redis):
    redis.set(redis_keys.user_lock("u1"), "other-holder")
    time = FakeTime()
    with pytest.raises(TransientError, match="u1"):
        with lock(redis, time, wait=0.5):
            pytest.fail("entered a lock someone else holds")
    assert 0.5 <= time.now - 100.0 < 0.6
    assert max(time.sleeps) <= 0.03  # backoff is capped at 20 ms (plus jitter)
    assert redis.get(redis_keys.user_lock("u1")) == "other-holder"


def test_other_users_are_not_blocked(redis):
    redis.set(redis_keys.user_lock("u1"), "other-holder")
    with lock(redis, user="u2", wait=0):
        pass


def test_release_never_deletes_a_lock_someone_else_now_holds(redis):
    key = redis_keys.user_lock("u1")
    with lock(redis):
        redis.set(key, "next-holder")  # ours expired and another worker took it
    assert redis.get(key) == "next-holder"
