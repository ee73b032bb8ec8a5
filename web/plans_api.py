"""The signed-in user's token plan: see the subscription, cancel it, follow a plan checkout.

    GET  /api/subscription                 {"subscription": {...} | null}
    POST /api/subscription/cancel          {"atPeriodEnd": true} (the default; false ends it now)
    GET  /api/plan-checkouts/<session id>  the success page's view of the user's own plan checkout

Refusals (no live plan 404, already ending 409, Stripe refused 502, bad bodies) are the
services' exceptions, answered by web/problems.py.
"""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from core.services import plans
from core.services.accounts import valid_session_id
from core.domain.errors import InvalidRequest, UnknownPurchase
from web import api
from web.security import signed_in

bp = Blueprint("plans_api", __name__, url_prefix="/api")


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
        raise UnknownPurchase("no such plan checkout for this account")
    return jsonify(found)
