"""The purchase gate: paid purchases plus open checkouts, one Lua round trip."""
from __future__ import annotations

import pytest

from core import redis_keys
from core.adapters import purchase_gate
from core.domain.errors import InvalidRequest
from core.services.checkout import PaymentProviderError, RateLimited, start_checkout
from core.adapters.velocity import HOUR_MS, record_purchase
from tests.unit.fakes import FIXED_NOW, fake_redis, make_deps

T0 = int(FIXED_NOW * 1000)
EXP = T0 + 31 * 60 * 1000


def reserve(redis, member, now=T0, expiry=EXP, uid="u1"):
    return purchase_gate.reserve(redis, uid, member, now, expiry, 5, 20)


def test_five_open_checkouts_fill_the_hour_and_the_sixth_is_refused_until_one_expires():
    redis = fake_redis()
    for i in range(5):
        assert reserve(redis, f"cs_{i}").allowed
    refused = reserve(redis, "cs_5")
    assert not refused.allowed and refused.last_hour == 5
    assert refused.retry_after_seconds == 31 * 60  # the first reservation's expiry
    assert reserve(redis, "cs_5", now=EXP + 1, expiry=EXP + 1 + 31 * 60 * 1000).allowed


def test_the_same_member_again_does_not_take_a_second_place():
    redis = fake_redis()
    for _ in range(10):
        assert reserve(redis, "pending:same-key").allowed
    assert redis.zcard(redis_keys.reservations("u1")) == 1


def test_released_and_paid_reservations_stop_counting_but_paid_purchases_count_in_the_window():
    redis = fake_redis()
    for i in range(5):
        reserve(redis, f"cs_{i}")
    purchase_gate.release(redis, "u1", "cs_0")  # checkout.session.expired
    assert reserve(redis, "cs_5").allowed
    record_purchase(redis, "u1", "cs_1", T0)  # paid: moves from open to paid, still counts
    refused = reserve(redis, "cs_6")
    assert not refused.allowed
    assert redis.zscore(redis_keys.reservations("u1"), "cs_1") is None


def test_paid_purchases_free_their_place_an_hour_later():
    redis = fake_redis()
    for i in range(5):
        record_purchase(redis, "u1", f"cs_{i}", T0 + i * 1000)
    refused = reserve(redis, "cs_new", now=T0 + 10_000)
    assert not refused.allowed and refused.retry_after_seconds == (HOUR_MS - 10_000) // 1000
    assert reserve(redis, "cs_new", now=T0 + HOUR_MS + 1).allowed


def test_the_day_limit_binds_after_twenty():
    redis = fake_redis()
    for i in range(20):
        record_purchase(redis, "u1", f"cs_{i}", T0 + i * (HOUR_MS // 4))
    refused = reserve(redis, "cs_x", now=T0 + 5 * HOUR_MS + 1)
    assert not refused.allowed and refused.last_day == 20


def test_users_do_not_share_a_gate():
    redis = fake_redis()
    for i in range(5):
        reserve(redis, f"cs_{i}", uid="u1")
    assert reserve(redis, "cs_other", uid="u2").allowed


class FakeSessions:
    def __init__(self, fail=None):
        self.calls, self.fail = [], fail

    def create(self, params, options):
        self.calls.append((params, options))
        if self.fail:
            raise self.fail
        return {"id": f"cs_test_{len(self.calls)}", "url": f"http://pay/{len(self.calls)}",
                "expires_at": params["expires_at"]}


class FakeStripe:
    def __init__(self, fail=None):
        self.sessions = FakeSessions(fail)
        self.v1 = type("V1", (), {"checkout": type("C", (), {"sessions": self.sessions})()})()


def checkout_deps(fail=None):
    from dataclasses import replace

    deps = make_deps()
    return replace(deps, stripe=FakeStripe(fail))


def test_checkout_takes_price_and_tokens_from_the_catalog_and_tags_the_payment_intent():
    deps = checkout_deps()
    started = start_checkout(deps, "u1", "pro", "key-1")
    params, options = deps.stripe.sessions.calls[0]
    assert params["mode"] == "payment" and params["client_reference_id"] == "u1"
    assert params["line_items"][0]["price_data"] == {"currency": "usd", "unit_amount": 2999,
                                                     "product_data": {"name": "Pro: 500 tokens"}}
    assert params["metadata"] == params["payment_intent_data"]["metadata"] == \
        {"userId": "u1", "packageId": "pro", "tokens": "500"}
    assert params["success_url"].endswith("/purchase/success?session_id={CHECKOUT_SESSION_ID}")
    assert params["expires_at"] == int(FIXED_NOW) + 31 * 60
    assert options == {"idempotency_key": "checkout:u1:key-1"}
    assert deps.redis.zrange(redis_keys.reservations("u1"), 0, -1) == [started.session_id]


@pytest.mark.parametrize("package", [None, "", "mega", 5, ["pro"], {"id": "pro"}])
def test_unknown_packages_are_refused_before_anything_is_reserved(package):
    deps = checkout_deps()
    with pytest.raises(InvalidRequest):
        start_checkout(deps, "u1", package)
    assert deps.stripe.sessions.calls == [] and deps.redis.zcard(redis_keys.reservations("u1")) == 0


@pytest.mark.parametrize("key", ["", "x" * 65, "a/b", 7])
def test_bad_idempotency_keys_are_refused(key):
    with pytest.raises(InvalidRequest):
        start_checkout(checkout_deps(), "u1", "starter", key)


def test_a_stripe_failure_releases_the_reservation():
    deps = checkout_deps(fail=RuntimeError("stripe down"))
    with pytest.raises(PaymentProviderError):
        start_checkout(deps, "u1", "starter")
    assert deps.redis.zcard(redis_keys.reservations("u1")) == 0


def test_the_sixth_checkout_in_an_hour_is_rate_limited_with_a_human_message():
    deps = checkout_deps()
    for _ in range(5):
        start_checkout(deps, "u1", "starter")
    with pytest.raises(RateLimited) as refused:
        start_checkout(deps, "u1", "starter")
    assert refused.value.retry_after_seconds == 31 * 60
    assert "5 purchases per hour" in refused.value.message and "31 minutes" in refused.value.message
    assert len(deps.stripe.sessions.calls) == 5
