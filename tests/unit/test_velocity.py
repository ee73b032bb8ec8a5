from core import redis_keys
from core.adapters.velocity import DAY_MS, HOUR_MS, Velocity, record_purchase

T0 = 1_767_225_600_000


def test_counts_purchases_in_the_last_hour_and_day(redis):
    record_purchase(redis, "u1", "cs_day_old_ish", T0 - 23 * HOUR_MS)
    record_purchase(redis, "u1", "cs_two_hours", T0 - 2 * HOUR_MS)
    record_purchase(redis, "u1", "cs_recent", T0 - 10 * 60 * 1000)
    assert record_purchase(redis, "u1", "cs_now", T0) == Velocity(last_hour=2, last_day=4)


def test_same_session_twice_counts_once(redis):
    assert record_purchase(redis, "u1", "cs_1", T0) == Velocity(1, 1)
    assert record_purchase(redis, "u1", "cs_1", T0 + 1000) == Velocity(1, 1, newly_recorded=False)


def test_users_are_counted_separately(redis):
    record_purchase(redis, "u1", "cs_1", T0)
    assert record_purchase(redis, "u2", "cs_2", T0) == Velocity(1, 1)


def test_entries_older_than_a_day_are_dropped(redis):
    record_purchase(redis, "u1", "cs_old", T0 - DAY_MS - 1)
    record_purchase(redis, "u1", "cs_hour_ago", T0 - HOUR_MS - 1)
    assert record_purchase(redis, "u1", "cs_now", T0) == Velocity(last_hour=1, last_day=2)
    assert redis.zrange(redis_keys.velocity("u1"), 0, -1) == ["cs_hour_ago", "cs_now"]


def test_the_set_expires_a_day_after_the_last_purchase(redis):
    record_purchase(redis, "u1", "cs_1", T0)
    assert DAY_MS - 1000 < redis.pttl(redis_keys.velocity("u1")) <= DAY_MS


def test_over_means_strictly_more_than_a_limit():
    assert not Velocity(5, 20).over(5, 20)
    assert Velocity(6, 6).over(5, 20)
    assert Velocity(1, 21).over(5, 20)
