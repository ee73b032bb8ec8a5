"""The signed-in user's token plan: see the subscription, cancel it, follow a plan checkout.

    GET  /api/subscription                 {"subscription": {...} | null}
    POST /api/subscription/cancel          {"atPeriodEnd": true} (the default; false ends it now)
    GET  /api/plan-checkouts/<session id>  the success page's view of the user's own plan checkout
"""
from __future__ import annotations

from google.api_core.exceptions import GoogleAPICallError, RetryError
from redis.exceptions import RedisError

from flask import Blueprint, g, jsonify, request

from core.errors import TransientError
from core.services import plans
from core.services.accounts import valid_session_id
from core.domain.errors import InvalidRequest
from web import api
from web.security import signed_in

bp = Blueprint("plans_api", __name__, url_prefix="/api")

# The user API's answers for bad bodies and unavailable backing services, on these routes too.
for _error, _handler in ((InvalidRequest, api.invalid), (api._TooLarge, api.too_large), (TransientError, api.busy),
                         (RedisError, api.backing_service_down), (GoogleAPICallError, api.backing_service_down),
                         (RetryError, api.backing_service_down)):
    bp.register_error_handler(_error, _handler)


@bp.errorhandler(plans.NoSubscription)
def no_subscription(exc: plans.NoSubscription):
    return jsonify(error="no_subscription", message=str(exc), subscription=None), 404


@bp.errorhandler(plans.AlreadyCanceling)
def already_canceling(exc: plans.AlreadyCanceling):
    return jsonify(error="already_canceling", message="Your plan is already set to end.",
                   subscription=exc.state), 409


@bp.errorhandler(plans.CancelRefused)
def cancel_refused(_):
    return jsonify(error="payment_provider_unavailable",
                   message="Stripe could not cancel your plan right now; nothing changed. Please try again."), 502


def _optional_json_body() -> dict:
    """A JSON object, or {} when no body was sent at all."""
    if not request.content_length and "Transfer-Encoding" not in request.headers:
        return {}
    return api._json_body()


@bp.get("/subscription")
@signed_in
def subscription():
    return jsonify(plans.subscription_state(api._deps(), g.uid))


@bp.post("/subscription/cancel")
@signed_in
def cancel_subscription():
    body = _optional_json_body()
    api._fields(body, {"atPeriodEnd"})
    at_period_end = body.get("atPeriodEnd", True)
    if not isinstance(at_period_end, bool):
        raise InvalidRequest("atPeriodEnd must be true or false", "atPeriodEnd")
    return jsonify(plans.cancel_subscription(api._deps(), g.uid, at_period_end))


@bp.get("/plan-checkouts/<session_id>")
@signed_in
def plan_checkout(session_id: str):
    if not valid_session_id(session_id):
        raise InvalidRequest("session_id is not a Checkout Session id", "session_id")
    found = plans.plan_checkout(api._deps(), g.uid, session_id)
    if found is None:
        return jsonify(error="not_found", message="no such plan checkout for this account"), 404
    return jsonify(found)
