"""Starting a purchase: the gate, then a Stripe Checkout Session built from the catalog.

A package is a one-time payment (``start_checkout``); a token plan is a subscription
(``start_plan_checkout``). Both pass the same purchase gate.

Price, tokens and currency come from the catalog, never from the client. The session
carries the user and package in ``client_reference_id`` and ``metadata``, and the same
metadata on its PaymentIntent so refunds and disputes map back to the purchase. Adaptive
Pricing is off: the buyer pays the catalog's amount in the catalog's one currency.

Idempotency: an ``Idempotency-Key`` names one checkout attempt of one user for
``ATTEMPT_TTL_SECONDS``. The attempt's parameters (its ``expires_at``) are pinned in Redis
on the first request, so every retry sends Stripe byte-identical parameters under the same
Stripe idempotency key. A retry answers the attempt's session (same id, url, expiresAt) and
never takes a second place in the gate; once the session is known, a retry answers it
without calling Stripe, even after it expired or was paid (a new purchase needs a new key).
The same key for another package or plan is a ``KeyConflict`` (409). If no session was ever
recorded (Stripe failed) and the pinned ``expires_at`` is too close for Stripe to accept
(retry more than ~45 s later), the attempt starts over with a new ``expires_at`` and its own
Stripe key: the first attempt's URL, if any, never reached anyone.
"""
from __future__ import annotations

import json
import logging
import secrets
from dataclasses import asdict, dataclass, replace
from typing import Callable

from core.domain.errors import InvalidRequest
from core.services.limits import ensure_windows
from core import metrics, redis_keys
from core.deps import Deps
from core.domain.errors import KeyConflict
from core.domain.ids import is_valid_doc_id
from core.errors import TransientError

log = logging.getLogger("tokenbank.checkout")

SESSION_LIFETIME_SECONDS = 31 * 60  # Stripe's minimum expires_at is 30 minutes ahead
RESEND_MIN_AHEAD_SECONDS = 30 * 60 + 15  # a pinned expires_at is resent while it is this far ahead
ATTEMPT_TTL_SECONDS = 48 * 3600  # longer than Stripe keeps its idempotency keys (at least 24 h)
MAX_CLIENT_KEY_CHARS = 64
ADAPTIVE_PRICING_OFF = {"enabled": False}  # amounts are validated against a one-currency catalog


class RateLimited(Exception):
    def __init__(self, retry_after_seconds: int, message: str):
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds
        self.message = message


class PaymentProviderError(Exception):
    """Stripe did not create the session; nothing was reserved."""


@dataclass(frozen=True)
class CheckoutStarted:
    session_id: str
    url: str
    expires_at: int


def _human_wait(seconds: int) -> str:
    minutes = (seconds + 59) // 60
    if minutes < 60:
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    hours = (minutes + 59) // 60
    return f"{hours} hour{'s' if hours != 1 else ''}"


def start_checkout(deps: Deps, user_id: str, package_id: object, client_key: object = None) -> CheckoutStarted:
    package = deps.catalog.get(package_id)
    if package is None:
        raise InvalidRequest(f"unknown package {package_id!r}; choose one of "
                             f"{', '.join(p.id for p in deps.catalog.packages)}", "packageId")
    metadata = {"userId": user_id, "packageId": package.id, "tokens": str(package.tokens)}
    base = deps.settings.public_base_url.rstrip("/")

    def params(expires_at: int) -> dict:
        return {
            "mode": "payment",
            "line_items": [{"quantity": 1, "price_data": {
                "currency": package.currency, "unit_amount": package.price_cents,
                "product_data": {"name": f"{package.name}: {package.tokens} tokens"}}}],
            "client_reference_id": user_id,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "success_url": f"{base}/purchase/success?session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{base}/purchase/cancel?package={package.id}",
            "adaptive_pricing": dict(ADAPTIVE_PRICING_OFF),
            "expires_at": expires_at,
        }

    return _gated_session(deps, user_id, client_key, params, f"package:{package.id}", {"package_id": package.id})


def start_plan_checkout(deps: Deps, user_id: str, plan_id: object, client_key: object = None) -> CheckoutStarted:
    """A token plan: a ``mode=subscription`` session with a recurring price from the catalog.

    The subscription carries ``metadata.userId``/``planId``; each paid invoice then credits
    the plan's allowance (core/handlers/plans.py). Same gate, URLs and idempotency as a package.
    """
    plan = deps.catalog.plan(plan_id)
    if plan is None:
        raise InvalidRequest(f"unknown plan {plan_id!r}; choose one of "
                             f"{', '.join(p.id for p in deps.catalog.plans)}", "planId")
    metadata = {"userId": user_id, "planId": plan.id}
    base = deps.settings.public_base_url.rstrip("/")

    def params(expires_at: int) -> dict:
        return {
            "mode": "subscription",
            "line_items": [{"quantity": 1, "price_data": {
                "currency": plan.currency, "unit_amount": plan.price_cents,
                "recurring": {"interval": plan.interval},
                "product_data": {"name": f"{plan.name}: {plan.tokens_per_period} tokens every {plan.interval}"}}}],
            "client_reference_id": user_id,
            "metadata": metadata,
            "subscription_data": {"metadata": metadata},
            "success_url": f"{base}/purchase/success?session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{base}/purchase/cancel?plan={plan.id}",
            "adaptive_pricing": dict(ADAPTIVE_PRICING_OFF),
            "expires_at": expires_at,
        }

    return _gated_session(deps, user_id, client_key, params, f"plan:{plan.id}", {"plan_id": plan.id})


# -- one attempt per (user, Idempotency-Key) ----------------------------------------------
@dataclass(frozen=True)
class _Attempt:
    request: str  # what was asked for: "package:pro", "plan:monthly"
    expires_at: int  # the expires_at every Stripe call of this attempt sends
    stripe_key: str  # the Stripe idempotency key of this attempt
    session: dict | None = None  # {"id", "url", "expiresAt"} once Stripe created it

    def dumps(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))


# Replace the attempt only if it is still what the caller read ('' = absent); answer the current one.
_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if (not current and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return ARGV[2]
end
return current
"""


def _compare_and_set(redis, key: str, expected: str, new: _Attempt) -> str:
    return redis.eval(_COMPARE_AND_SET, 1, key, expected, new.dumps(), ATTEMPT_TTL_SECONDS)


def _describe(request: str) -> str:
    kind, _, item = request.partition(":")
    return f"{kind} {item!r}"


def _key_conflict(first: str, now: str) -> KeyConflict:
    return KeyConflict(f"This Idempotency-Key was already used to start a checkout for {_describe(first)}; "
                       f"send a new Idempotency-Key to buy {_describe(now)}.")


def _attempt(redis, user_id: str, client_key: str, request: str, now: int) -> tuple[_Attempt, str]:
    """The attempt this request continues (or starts), and its stored form for compare-and-set."""
    key = redis_keys.checkout_attempt(user_id, client_key)
    expected, candidate = "", _Attempt(request, now + SESSION_LIFETIME_SECONDS, f"checkout:{user_id}:{client_key}")
    for _ in range(3):
        raw = _compare_and_set(redis, key, expected, candidate)
        current = _Attempt(**json.loads(raw))
        if current.request != request:
            raise _key_conflict(current.request, request)
        if current.session is not None or current.expires_at - now >= RESEND_MIN_AHEAD_SECONDS:
            return current, raw
        # Never created, and Stripe would now refuse its expires_at: start this attempt over.
        expires_at = now + SESSION_LIFETIME_SECONDS
        expected, candidate = raw, _Attempt(request, expires_at, f"checkout:{user_id}:{client_key}:{expires_at}")
    raise TransientError("checkout attempt is being changed concurrently")


def _gated_session(deps: Deps, user_id: str, client_key: object, params: Callable[[int], dict],
                   request: str, log_extra: dict) -> CheckoutStarted:
    """Continue the key's attempt: its known session, or reserve a place and create it at Stripe."""
    settings = deps.settings
    if client_key is None:
        client_key = secrets.token_hex(16)
    if not isinstance(client_key, str) or not client_key or len(client_key) > MAX_CLIENT_KEY_CHARS \
            or not is_valid_doc_id(client_key):
        raise InvalidRequest("Idempotency-Key must be 1-64 printable characters", "Idempotency-Key")
    now = deps.clock()
    attempt, stored = _attempt(deps.redis, user_id, client_key, request, int(now))
    if attempt.session is not None:
        log.info("checkout session replayed", extra={"user_id": user_id, "session_id": attempt.session["id"],
                                                     **log_extra})
        return CheckoutStarted(attempt.session["id"], attempt.session["url"], attempt.session["expiresAt"])
    expires_at = attempt.expires_at
    placeholder = f"pending:{client_key}"  # one place per key, whatever happens to its retries
    ensure_windows(deps, user_id)  # Redis may have lost them: never admit on an empty window
    decision = deps.gate.reserve(user_id, placeholder, int(now * 1000), expires_at * 1000)
    if not decision.allowed:
        metrics.RATE_LIMITED.inc()
        log.warning("purchase gate refused checkout", extra={"user_id": user_id, "last_hour": decision.last_hour,
                                                             "last_day": decision.last_day})
        limit = (f"{settings.purchases_per_hour} purchases per hour"
                 if decision.last_hour >= settings.purchases_per_hour else f"{settings.purchases_per_day} per day")
        raise RateLimited(decision.retry_after_seconds,
                          f"You have reached the limit of {limit} (open checkouts count until they expire). "
                          f"Please try again in {_human_wait(decision.retry_after_seconds)}.")
    try:
        session = deps.stripe.v1.checkout.sessions.create(
            params=params(expires_at), options={"idempotency_key": attempt.stripe_key})
    except Exception as exc:
        deps.gate.release(user_id, placeholder)
        log.error("stripe refused checkout session: %s", exc, extra={"user_id": user_id})
        raise PaymentProviderError(str(exc)) from exc
    started = CheckoutStarted(session["id"], session["url"], int(session["expires_at"] or expires_at))
    # A durable record that this user started this session: only its owner may confirm it, and
    # open checkouts can be counted from Firestore if Redis loses the gate's data.
    deps.store.record_checkout(started.session_id, {"userId": user_id, "item": request,
                                                    "expiresAt": started.expires_at})
    # Remember the session first: from now on a retry answers it without the gate or Stripe.
    _compare_and_set(deps.redis, redis_keys.checkout_attempt(user_id, client_key), stored,
                     replace(attempt, session={"id": started.session_id, "url": started.url,
                                               "expiresAt": started.expires_at}))
    deps.gate.confirm(user_id, placeholder, started.session_id, started.expires_at * 1000)
    log.info("checkout session created", extra={"user_id": user_id, "session_id": session["id"], **log_extra})
    return started
