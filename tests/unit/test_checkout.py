"""What a paid session must meet (core/domain/checkout.py), and the session tokenbank asks
Stripe for (core/services/checkout.py): catalog-priced, Adaptive Pricing off in both modes,
one attempt per Idempotency-Key - against a Stripe-like fake and the in-process sandbox."""
import copy
import time
from dataclasses import replace

import pytest
import stripe

from core import redis_keys
from core.adapters.catalog_file import load_catalog
from core.services.checkout import (
    ATTEMPT_TTL_SECONDS, PaymentProviderError, RateLimited, start_checkout, start_plan_checkout,
)
from core.domain.checkout import CheckoutSession, validate_paid_session
from core.domain.errors import KeyConflict, PurchaseRejected
from sandbox import inprocess
from tests.unit.fakes import FIXED_NOW, checkout_session, make_deps

CATALOG = load_catalog()


def validate(**overrides):
    return validate_paid_session(CheckoutSession.from_stripe(checkout_session(**overrides)), CATALOG)


def rejection(**overrides) -> str:
    with pytest.raises(PurchaseRejected) as rejected:
        validate(**overrides)
    return rejected.value.reason


def test_valid_paid_session_becomes_a_purchase_priced_by_the_catalog():
    purchase = validate(user_id="user_7", package="pro", session_id="cs_ok", payment_intent="pi_1")
    assert (purchase.session_id, purchase.user_id, purchase.package.id) == ("cs_ok", "user_7", "pro")
    assert (purchase.package.tokens, purchase.amount_paid, purchase.currency) == (500, 2999, "usd")
    assert purchase.payment_intent == "pi_1"


def test_upper_case_currency_is_accepted():
    assert validate(currency="USD").currency == "usd"


def test_metadata_user_id_is_used_when_client_reference_id_is_absent():
    assert validate(user_id="user_9", client_reference_id=None).user_id == "user_9"


def test_expanded_payment_intent_object_gives_its_id():
    assert validate(payment_intent={"id": "pi_expanded", "object": "payment_intent"}).payment_intent == "pi_expanded"


@pytest.mark.parametrize("session_id", ["", "cs/1", "..", "__cs__", "c" * 129, None, 42])
def test_invalid_session_id(session_id):
    assert rejection(id=session_id) == "invalid_session_id"


@pytest.mark.parametrize("mode", ["subscription", "setup", None])
def test_wrong_mode(mode):
    assert rejection(mode=mode) == "wrong_mode"


@pytest.mark.parametrize("payment_status", ["unpaid", "no_payment_required", None, "PAID"])
def test_not_paid(payment_status):
    assert rejection(payment_status=payment_status) == "not_paid"


def test_user_mismatch_between_client_reference_and_metadata():
    assert rejection(client_reference_id="user_a", metadata={"userId": "user_b", "packageId": "starter",
                                                             "tokens": "50"}) == "user_mismatch"


@pytest.mark.parametrize("ref", [None, ""])
@pytest.mark.parametrize("meta", [None, ""])
def test_missing_user(ref, meta):
    metadata = {"packageId": "starter", "tokens": "50"}
    if meta is not None:
        metadata["userId"] = meta
    assert rejection(client_reference_id=ref, metadata=metadata) == "missing_user"


@pytest.mark.parametrize("user_id", ["/", "a/b", "..", ".", "__user__", "u" * 129, " user", 42, ["user_1"]])
def test_invalid_user(user_id):
    assert rejection(client_reference_id=user_id, metadata={"packageId": "starter", "tokens": "50"}) == "invalid_user"


def test_invalid_user_in_metadata_only():
    assert rejection(client_reference_id=None, metadata={"userId": "../x", "packageId": "starter",
                                                         "tokens": "50"}) == "invalid_user"


@pytest.mark.parametrize("package_id", ["gold", None, 1, "STARTER"])
def test_unknown_package(package_id):
    assert rejection(metadata={"userId": "user_1", "packageId": package_id, "tokens": "50"}) == "unknown_package"


@pytest.mark.parametrize("tokens", [50, "500", "50.0", None, " 50"])
def test_tokens_mismatch(tokens):
    assert rejection(metadata={"userId": "user_1", "packageId": "starter", "tokens": tokens}) == "tokens_mismatch"


@pytest.mark.parametrize("amount", [498, 500, 0, None, True, 499.0, "499"])
def test_amount_mismatch(amount):
    assert rejection(amount_total=amount) == "amount_mismatch"


@pytest.mark.parametrize("currency", ["eur", None, 840, ""])
def test_currency_mismatch(currency):
    assert rejection(currency=currency) == "currency_mismatch"


def test_price_of_one_package_cannot_buy_another():
    assert rejection(package="premium", amount_total=499) == "amount_mismatch"


# -- the session tokenbank asks Stripe for (core/services/checkout.py) --------------------


class Clock:
    def __init__(self, now: float = FIXED_NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now


class StripeLike:
    """Checkout Sessions with Stripe's rules: the same idempotency key with the same parameters
    replays the session, with other parameters is a 400; expires_at at least 30 minutes ahead."""

    def __init__(self, clock: Clock):
        self.clock, self.calls, self.saved, self.fail_next = clock, [], {}, None
        self.v1 = type("V1", (), {"checkout": type("C", (), {"sessions": self})()})()

    def create(self, params, options):
        self.calls.append((copy.deepcopy(params), dict(options)))
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        key = options["idempotency_key"]
        if key in self.saved:
            if self.saved[key][0] != params:
                raise stripe.IdempotencyError("Keys for idempotent requests can only be used with the same "
                                              "parameters they were first used with.", http_status=400)
            return self.saved[key][1]
        if params["expires_at"] < self.clock() + 30 * 60:
            raise stripe.InvalidRequestError("The `expires_at` timestamp must be at least 30 minutes from "
                                             "Checkout Session creation.", "expires_at", http_status=400)
        n = len(self.saved) + 1
        self.saved[key] = (copy.deepcopy(params), {"id": f"cs_test_{n}", "url": f"https://pay.test/{n}",
                                                   "expires_at": params["expires_at"]})
        return self.saved[key][1]


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def stripe_like(clock):
    return StripeLike(clock)


@pytest.fixture
def deps(clock, stripe_like):
    return replace(make_deps(clock=clock), stripe=stripe_like)


def places(deps, uid="u1") -> list[str]:
    return deps.redis.zrange(redis_keys.reservations(uid), 0, -1)


def test_package_and_plan_sessions_are_created_with_adaptive_pricing_off(deps, stripe_like):
    start_checkout(deps, "u1", "starter")
    start_plan_checkout(deps, "u1", "monthly")
    (package, _), (plan, _) = stripe_like.calls
    assert (package["mode"], plan["mode"]) == ("payment", "subscription")
    assert package["adaptive_pricing"] == plan["adaptive_pricing"] == {"enabled": False}


def test_the_sandbox_accepts_both_sessions_as_the_sdk_sends_them_and_echoes_adaptive_pricing():
    sdk = inprocess.client()
    deps = replace(make_deps(clock=time.time), stripe=sdk)
    for started in (start_checkout(deps, "u1", "pro"), start_plan_checkout(deps, "u1", "monthly")):
        session = sdk.v1.checkout.sessions.retrieve(started.session_id)
        assert session.adaptive_pricing.enabled is False and session.currency == "usd"
    created = [r for r in sdk.http.requests if r["method"] == "POST"]
    assert len(created) == 2 and all("adaptive_pricing[enabled]=false" in r["body"] for r in created)


@pytest.mark.parametrize("mode,price", [("payment", {}), ("subscription", {"recurring": {"interval": "month"}})])
def test_the_sandbox_echoes_adaptive_pricing_as_asked_and_refuses_what_stripe_refuses(mode, price):
    sdk = inprocess.client()
    base = {"mode": mode, "line_items": [{"quantity": 1, "price_data": {
        "currency": "usd", "unit_amount": 999, "product_data": {"name": "x"}, **price}}]}
    for enabled in (True, False):
        session = sdk.v1.checkout.sessions.create(params={**base, "adaptive_pricing": {"enabled": enabled}})
        assert session.adaptive_pricing.to_dict() == {"enabled": enabled}
    for bad, param in (({"enabled": "maybe"}, "adaptive_pricing[enabled]"),
                       ({"enabled": False, "currency": "eur"}, "adaptive_pricing[currency]"),
                       ("on", "adaptive_pricing")):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            sdk.v1.checkout.sessions.create(params={**base, "adaptive_pricing": bad})
        assert (refused.value.http_status, refused.value.param) == (400, param)


# -- one attempt per Idempotency-Key ------------------------------------------------------
def test_a_retry_a_second_later_sends_the_same_parameters_and_answers_the_same_session(deps, stripe_like, clock):
    first = start_checkout(deps, "u1", "starter", "click")
    clock.now += 1
    assert start_checkout(deps, "u1", "starter", "click") == first
    assert places(deps) == [first.session_id]
    assert len(stripe_like.saved) == 1


def test_a_known_session_is_answered_without_stripe_or_the_gate_even_much_later(deps, stripe_like, clock):
    first = start_plan_checkout(deps, "u1", "monthly", "click")
    for i in range(4):
        start_checkout(deps, "u1", "starter", f"other-{i}")
    with pytest.raises(RateLimited):
        start_checkout(deps, "u1", "starter", "one-too-many")
    calls = len(stripe_like.calls)
    for later in (10 * 60, 3 * 3600, 47 * 3600):
        clock.now = FIXED_NOW + later
        assert start_plan_checkout(deps, "u1", "monthly", "click") == first
    assert len(stripe_like.calls) == calls


def test_a_retry_soon_after_a_stripe_failure_resends_the_same_request(deps, stripe_like, clock):
    stripe_like.fail_next = stripe.APIConnectionError("timed out")
    with pytest.raises(PaymentProviderError):
        start_checkout(deps, "u1", "basic", "click")
    assert places(deps) == []  # nothing held while nothing exists
    clock.now += 30
    started = start_checkout(deps, "u1", "basic", "click")
    (failed, failed_options), (retried, retried_options) = stripe_like.calls
    assert (retried, retried_options) == (failed, failed_options) == (retried, {"idempotency_key": "checkout:u1:click"})
    assert places(deps) == [started.session_id]


def test_a_late_retry_of_an_attempt_stripe_never_created_starts_it_over(deps, stripe_like, clock):
    stripe_like.fail_next = stripe.APIError("stripe is down", http_status=500)
    with pytest.raises(PaymentProviderError):
        start_checkout(deps, "u1", "basic", "click")
    clock.now += 5 * 60  # the pinned expires_at is now 26 minutes ahead: Stripe would refuse it
    started = start_checkout(deps, "u1", "basic", "click")
    params, options = stripe_like.calls[-1]
    assert params["expires_at"] == started.expires_at == int(clock.now) + 31 * 60
    assert options == {"idempotency_key": f"checkout:u1:click:{started.expires_at}"}
    clock.now += 1
    assert start_checkout(deps, "u1", "basic", "click") == started
    assert places(deps) == [started.session_id] and len(stripe_like.saved) == 1


def test_the_same_key_for_another_package_or_a_plan_is_a_conflict_that_reserves_nothing(deps, stripe_like, clock):
    first = start_checkout(deps, "u1", "starter", "click")
    for other in (lambda: start_checkout(deps, "u1", "pro", "click"),
                  lambda: start_plan_checkout(deps, "u1", "monthly", "click")):
        clock.now += 1
        with pytest.raises(KeyConflict) as conflict:
            other()
        assert "package 'starter'" in str(conflict.value) and "new Idempotency-Key" in str(conflict.value)
    assert len(stripe_like.calls) == 1 and places(deps) == [first.session_id]


def test_keys_belong_to_one_user_and_are_remembered_longer_than_stripe_keeps_its_own(deps):
    mine, theirs = start_checkout(deps, "u1", "starter", "k"), start_checkout(deps, "u2", "pro", "k")
    assert mine.session_id != theirs.session_id
    assert 24 * 3600 < deps.redis.ttl(redis_keys.checkout_attempt("u1", "k")) <= ATTEMPT_TTL_SECONDS


def test_without_a_key_every_call_is_a_new_session(deps):
    assert start_checkout(deps, "u1", "starter").session_id != start_checkout(deps, "u1", "starter").session_id
    assert len(places(deps)) == 2
