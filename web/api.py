"""The signed-in user's API: start a checkout, read balance, ledger and purchases."""
from __future__ import annotations

import json
import logging

from google.api_core.exceptions import GoogleAPICallError, RetryError
from redis.exceptions import RedisError

from flask import Blueprint, current_app, g, jsonify, request

from core.services import accounts
from core.errors import EnqueueFailed
from core.services.checkout import PaymentProviderError, RateLimited, start_checkout, start_plan_checkout
from core.services.balance import grant, spend
from core.domain.ids import is_valid_doc_id
from core.domain.errors import (
    AccountFrozen, InsufficientFunds, InvalidRequest, KeyConflict, UnknownPurchase, UnknownUser,
)
from core.errors import TransientError
from web.security import signed_in, signed_in_or_service

bp = Blueprint("api", __name__, url_prefix="/api")
log = logging.getLogger("tokenbank.api")
MAX_JSON_BYTES = 4096


def _deps():
    return current_app.config["TOKENBANK_DEPS"]


def _json_body() -> dict:
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise _TooLarge()
    if not request.is_json:
        raise InvalidRequest("send a JSON object with Content-Type: application/json")
    body = request.get_data(cache=False)
    if len(body) > MAX_JSON_BYTES:
        raise _TooLarge()
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidRequest("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object")
    return data


class _TooLarge(Exception):
    pass


@bp.errorhandler(InvalidRequest)
def invalid(exc: InvalidRequest):
    return jsonify(error="invalid_request", message=exc.message, field=exc.field), 400


@bp.errorhandler(_TooLarge)
def too_large(_):
    return jsonify(error="too_large", message=f"request body over {MAX_JSON_BYTES} bytes"), 413


@bp.errorhandler(RateLimited)
def rate_limited(exc: RateLimited):
    return (jsonify(error="rate_limited", message=exc.message, retryAfterSeconds=exc.retry_after_seconds), 429,
            {"Retry-After": str(exc.retry_after_seconds)})


@bp.errorhandler(EnqueueFailed)
def enqueue_failed(_):
    return jsonify(error="unavailable", message="Please try again in a moment."), 503, {"Retry-After": "5"}


@bp.errorhandler(PaymentProviderError)
def provider_error(_):
    return jsonify(error="payment_provider_unavailable",
                   message="Checkout is unavailable right now; nothing was charged. Please try again."), 502


@bp.errorhandler(InsufficientFunds)
def insufficient(exc: InsufficientFunds):
    return (jsonify(error="insufficient_funds", message=f"Not enough tokens: {exc.available} available "
                    f"(balance {exc.balance}), needed {exc.amount}.", balance=exc.balance,
                    available=exc.available, needed=exc.amount), 402)


@bp.errorhandler(AccountFrozen)
def frozen(_):
    return jsonify(error="account_frozen",
                   message="Spending is paused on this account while a payment dispute is open."), 423


@bp.errorhandler(KeyConflict)
def key_conflict(exc: KeyConflict):
    return jsonify(error="idempotency_conflict", message=str(exc)), 409


@bp.errorhandler(UnknownUser)
@bp.errorhandler(UnknownPurchase)
def not_found(exc: Exception):
    return jsonify(error="not_found", message=str(exc)), 404


@bp.errorhandler(TransientError)
def busy(_):
    return jsonify(error="busy", message="The account is busy; please retry."), 503, {"Retry-After": "1"}


@bp.errorhandler(RedisError)
@bp.errorhandler(GoogleAPICallError)
@bp.errorhandler(RetryError)
def backing_service_down(exc):
    log.error("backing service unavailable: %s", type(exc).__name__)
    return jsonify(error="unavailable", message="Temporarily unavailable; nothing was charged. Please retry."), \
        503, {"Retry-After": "5"}


def _fields(body: dict, allowed: set[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")


def _target_user(body: dict) -> tuple[str, str]:
    """Whose balance and who acts: the signed-in user, or (service) the body's userId."""
    if not g.service:
        if "userId" in body and body["userId"] != g.uid:
            raise InvalidRequest("userId may only be given by a trusted backend", "userId")
        return g.uid, f"user:{g.uid}"
    user_id = body.get("userId")
    if not is_valid_doc_id(user_id):
        raise InvalidRequest("userId is required and must be a valid user id", "userId")
    return user_id, "service"


@bp.post("/tokens/spend")
@signed_in_or_service
def spend_tokens():
    body = _json_body()
    _fields(body, {"amount", "reason", "idempotencyKey", "userId"})
    user_id, actor = _target_user(body)
    posted = spend(_deps(), user_id, body.get("amount"), body.get("reason"), body.get("idempotencyKey"), actor)
    return jsonify(posted.as_dict() | {"userId": user_id})


@bp.post("/tokens/grant")
@signed_in_or_service
def grant_tokens():
    if not g.service:
        return jsonify(error="forbidden", message="grants are for trusted backends only"), 403
    body = _json_body()
    _fields(body, {"amount", "reason", "idempotencyKey", "userId", "createAccount", "expiresAt", "source"})
    user_id, actor = _target_user(body)
    create = body.get("createAccount", False)
    if not isinstance(create, bool):
        raise InvalidRequest("createAccount must be true or false", "createAccount")
    posted = grant(_deps(), user_id, body.get("amount"), body.get("reason"), body.get("idempotencyKey"), actor,
                   create_account=create, expires_at=body.get("expiresAt"), source=body.get("source"))
    return jsonify(posted.as_dict() | {"userId": user_id})


@bp.post("/checkout")
@signed_in
def checkout():
    body = _json_body()
    unknown = set(body) - {"packageId", "planId"}
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(sorted(map(str, unknown)))}")
    if "packageId" in body and "planId" in body:
        raise InvalidRequest("send packageId (a package) or planId (a token plan), not both")
    field = "planId" if "planId" in body else "packageId"  # a token plan is a subscription checkout
    if field not in body:
        raise InvalidRequest("packageId is required (or planId for a token plan)", "packageId")
    if not isinstance(body[field], str):
        raise InvalidRequest(f"{field} must be a string", field)
    start = start_plan_checkout if field == "planId" else start_checkout
    started = start(_deps(), g.uid, body[field], request.headers.get("Idempotency-Key"))
    return jsonify(sessionId=started.session_id, url=started.url, expiresAt=started.expires_at)


@bp.get("/tokens/balance")
@signed_in
def balance():
    return jsonify(accounts.balance(_deps(), g.uid))


@bp.get("/tokens/transactions")
@signed_in
def transactions():
    return jsonify(accounts.transactions(_deps(), g.uid, request.args.get("limit"), request.args.get("cursor")))


@bp.get("/purchases/<session_id>")
@signed_in
def purchase(session_id: str):
    found = accounts.purchase_status(_deps(), g.uid, session_id)
    if found is None:
        return jsonify(error="not_found", message="no such purchase for this account"), 404
    return jsonify(found | {"balance": accounts.balance(_deps(), g.uid)["tokenBalance"]})


@bp.post("/purchases/<session_id>/confirm")
@signed_in
def confirm(session_id: str):
    accounts.request_confirmation(_deps(), current_app.config["TOKENBANK_QUEUE"], g.uid, session_id)
    return jsonify(accepted=True), 202
