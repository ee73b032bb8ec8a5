"""One error shape for the whole API: RFC 9457 problem details, built in this module only.

Every refusal under ``/api/`` (and of ``/healthz``, ``/readyz``, ``/metrics``) answers
``Content-Type: application/problem+json`` with

    type    ``urn:tokenbank:problem:<error>``: one stable type per error code
    title   a short summary of that type, the same for every occurrence
    status  the HTTP status, repeated
    detail  what went wrong with this request, a sentence a person understands
    error   the code (clients written before this shape read it), ``message`` = ``detail`` (ditto)
    field   on every ``invalid_request`` (400): the one input at fault, or null

plus the extension members some codes carry (402 ``balance``/``available``/``needed``, 429
``retryAfterSeconds``, the plan routes' ``subscription``, the webhook's 413 ``limit``).
Views raise the service's exceptions and never build an error body: ``install(app)``
registers the one exception → answer table below, so the same failure gets the same answer
on every route, and the OpenAPI document (web/openapi) reads ``TITLES`` for its list of codes.
An unexpected exception on an API route is a 500 problem (logged with its traceback), never an
HTML page.
"""
from __future__ import annotations

import logging

from flask import current_app, request
from google.api_core.exceptions import GoogleAPICallError, RetryError
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException, InternalServerError

from core.domain.errors import (
    AccountFrozen, HoldConflict, HoldExpired, InsufficientFunds, InvalidRequest, KeyConflict, Unauthorized, UnknownHold,
    UnknownPurchase, UnknownUser,
)
from core.errors import EnqueueFailed, TransientError
from core.services import plans, wallet
from core.services.checkout import PaymentProviderError, RateLimited

log = logging.getLogger("tokenbank.api")
MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:tokenbank:problem:"
JSON_PATHS = ("/api/", "/healthz", "/readyz", "/metrics")
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tokenbank"'}

# Every error code the API answers, with its title. A new code is added here first (problem()
# refuses a code it does not know), and the OpenAPI document lists exactly these.
TITLES = {
    "invalid_request": "The request is invalid",
    "unauthorized": "Authentication is required",
    "forbidden": "Not allowed for this caller",
    "insufficient_funds": "Not enough tokens",
    "not_found": "Not found",
    "no_subscription": "No active token plan",
    "no_receipt": "No receipt for this purchase",
    "method_not_allowed": "Method not allowed",
    "idempotency_conflict": "The idempotency key was used for another request",
    "hold_conflict": "The hold is no longer open for this",
    "already_canceling": "The token plan is already set to end",
    "hold_expired": "The hold expired",
    "too_large": "The request body is too large",
    "account_frozen": "Spending is paused on this account",
    "rate_limited": "Too many requests",
    "webhook_refused": "The webhook was refused",
    "internal_error": "Internal error",
    "payment_provider_unavailable": "The payment provider is unavailable",
    "unavailable": "Temporarily unavailable",
    "busy": "The account is busy",
}


class BodyTooLarge(Exception):
    """A JSON body over the API's limit (413)."""

    def __init__(self, limit: int):
        super().__init__(f"request body over {limit} bytes")
        self.limit = limit


class Forbidden(Exception):
    """The caller proved who it is but may not do this (403)."""


def is_api_request() -> bool:
    return request.path.startswith(JSON_PATHS[0]) or request.path in JSON_PATHS[1:]


def problem(status: int, error: str, detail: str, *, headers: dict | None = None, **extensions):
    """The one way an error answer is made."""
    body = {"type": TYPE_PREFIX + error, "title": TITLES[error], "status": status, "detail": detail,
            "error": error, "message": detail, **extensions}
    return current_app.response_class(current_app.json.dumps(body) + "\n", status, headers, mimetype=MEDIA_TYPE)


def _retry(seconds: int) -> dict:
    return {"Retry-After": str(seconds)}


def _unavailable(exc):
    log.error("backing service unavailable: %s", type(exc).__name__)
    return problem(503, "unavailable", "Temporarily unavailable; nothing was charged. Please retry.", headers=_retry(5))


# exception class → its answer. Lookup follows the class's MRO (Flask's own rule).
ANSWERS = {
    InvalidRequest: lambda e: problem(400, "invalid_request", e.message, field=e.field),  # null: no one input
    Unauthorized: lambda e: problem(401, "unauthorized", e.reason, headers=BEARER_CHALLENGE),
    Forbidden: lambda e: problem(403, "forbidden", str(e)),
    InsufficientFunds: lambda e: problem(
        402, "insufficient_funds", f"Not enough tokens: {e.available} available (balance {e.balance}), "
        f"needed {e.amount}.", balance=e.balance, available=e.available, needed=e.amount),
    UnknownUser: lambda e: problem(404, "not_found", str(e)),
    UnknownPurchase: lambda e: problem(404, "not_found", str(e)),
    UnknownHold: lambda e: problem(404, "not_found", str(e)),
    plans.NoSubscription: lambda e: problem(404, "no_subscription", str(e), subscription=None),
    wallet.NoReceipt: lambda e: problem(404, "no_receipt", str(e)),
    wallet.NoPortal: lambda e: problem(404, "no_subscription", str(e)),
    wallet.StripeUnavailable: lambda e: problem(
        502, "payment_provider_unavailable",
        "Stripe could not be reached right now; nothing changed. Please try again."),
    KeyConflict: lambda e: problem(409, "idempotency_conflict", str(e)),
    HoldConflict: lambda e: problem(409, "hold_conflict", str(e)),
    plans.AlreadyCanceling: lambda e: problem(409, "already_canceling", "Your plan is already set to end.",
                                              subscription=e.state),
    HoldExpired: lambda e: problem(410, "hold_expired", str(e)),
    BodyTooLarge: lambda e: problem(413, "too_large", str(e)),
    AccountFrozen: lambda e: problem(
        423, "account_frozen", "Spending is paused on this account while a payment dispute is open."),
    RateLimited: lambda e: problem(429, "rate_limited", e.message, headers=_retry(e.retry_after_seconds),
                                   retryAfterSeconds=e.retry_after_seconds),
    PaymentProviderError: lambda e: problem(
        502, "payment_provider_unavailable",
        "Checkout is unavailable right now; nothing was charged. Please try again."),
    plans.CancelRefused: lambda e: problem(
        502, "payment_provider_unavailable",
        "Stripe could not cancel your plan right now; nothing changed. Please try again."),
    EnqueueFailed: lambda e: problem(503, "unavailable", "Please try again in a moment.", headers=_retry(5)),
    TransientError: lambda e: problem(503, "busy", "The account is busy; please retry.", headers=_retry(1)),
    RedisError: _unavailable,
    GoogleAPICallError: _unavailable,
    RetryError: _unavailable,
}

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def from_http(exc: HTTPException):
    """Werkzeug's own refusals (no route, wrong method, body over the app's limit, ...) as problems."""
    status = exc.code or 500
    if status >= 500:
        return internal_error(exc)
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}  # 405 keeps its Allow
    error = _HTTP_CODES.get(status, "invalid_request")
    extra = {"field": None} if error == "invalid_request" else {}
    return problem(status, error, exc.description or TITLES[error], headers=headers, **extra)


def internal_error(exc: BaseException):
    original = getattr(exc, "original_exception", None) or exc
    log.error("unhandled error on %s %s: %s", request.method, request.path, type(original).__name__,
              exc_info=(type(original), original, original.__traceback__))
    return problem(500, "internal_error", "Something went wrong on our side. Please retry later "
                                          "(with the same idempotency key, where the route takes one).")


def install(app, page_error) -> None:
    """Register the answers; ``page_error(exc)`` answers HTTP errors of the HTML pages."""
    for exc_class, answer in ANSWERS.items():
        app.register_error_handler(exc_class, answer)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return from_http(exc) if is_api_request() else page_error(exc)

    @app.errorhandler(InternalServerError)
    def server_error(exc):
        return internal_error(exc) if is_api_request() else page_error(exc)
