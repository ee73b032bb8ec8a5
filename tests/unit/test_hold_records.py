"""A hold's record: it ends once (captured, released or expired), and keeps its history."""
from __future__ import annotations

import pytest

from core.domain.errors import HoldConflict, HoldExpired, InvalidRequest
from core.domain.holds import CAPTURED, EXPIRED, OPEN, RELEASED, Hold, ttl_seconds

T0 = 1_800_000_000.0


def hold(amount=100, ttl=900):
    return Hold("hold_x", "u", amount, T0 + ttl, T0, "k", "digest").placed(T0, "user:u")


def test_capture_releases_the_rest_and_a_second_capture_conflicts_unless_it_replays():
    h = hold().capture(60, "ck", "cd", "capture_hold_x", T0 + 1, "user:u")
    assert (h.status, h.captured, h.released, h.entry_id) == (CAPTURED, 60, 40, "capture_hold_x")
    assert [s["action"] for s in h.history] == ["placed", "captured"]
    assert h.is_replay_of_capture("ck", "cd")
    with pytest.raises(HoldConflict):
        h.is_replay_of_capture("other", "cd")
    with pytest.raises(HoldConflict):
        h.capture(10, "k2", "d2", None, T0 + 2, "user:u")
    with pytest.raises(HoldConflict):
        h.release(T0 + 2, "user:u")  # never both captured and released


def test_capture_after_expiry_is_gone_and_over_the_amount_is_invalid():
    with pytest.raises(HoldExpired):
        hold(ttl=10).capture(1, "ck", "cd", None, T0 + 10, "user:u")
    with pytest.raises(InvalidRequest):
        hold().capture(101, "ck", "cd", None, T0 + 1, "user:u")
    assert hold().capture(0, "ck", "cd", None, T0 + 1, "user:u").released == 100


def test_release_is_idempotent_and_an_expired_hold_reads_as_expired():
    released = hold().release(T0 + 1, "user:u")
    assert (released.status, released.released) == (RELEASED, 100)
    assert released.release(T0 + 2, "user:u") is None
    late = hold(ttl=10).release(T0 + 11, "user:u")
    assert late.status == EXPIRED and late.history[-1]["by"] == "expiry"
    assert hold().expire(T0).release(T0, "user:u") is None


def test_extend_moves_the_expiry_of_an_open_hold_only():
    h = hold(ttl=10).extend(T0 + 500, T0 + 5, "user:u")
    assert h.status == OPEN and h.expires_at == T0 + 500 and h.history[-1]["expiresAt"] == T0 + 500
    with pytest.raises(HoldExpired):
        hold(ttl=10).extend(T0 + 500, T0 + 10, "user:u")
    with pytest.raises(HoldConflict):
        hold().release(T0, "user:u").extend(T0 + 500, T0 + 1, "user:u")


@pytest.mark.parametrize("value", [9, 86_401, 0, -1, 1.5, "60", True, []])
def test_ttl_must_be_10_seconds_to_a_day(value):
    with pytest.raises(InvalidRequest):
        ttl_seconds(value)


def test_ttl_defaults_to_15_minutes():
    assert ttl_seconds(None) == 900 and ttl_seconds(10) == 10 and ttl_seconds(86_400) == 86_400
