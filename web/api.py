"""The signed-in user's API: start a checkout, spend and grant, read balance, ledger and purchases.

Views parse, call one service and answer; every refusal is an exception the service raises,
answered once for the whole API by web/problems.py (RFC 9457 problem details).
"""
from __future__ import annotations

import json

from flask import Blueprint, current_app, g, jsonify, request

from core.services import accounts
from core.services.checkout import start_checkout, start_plan_checkout
from core.services.balance import grant, spend
from core.domain.ids import is_valid_doc_id
from core.domain.errors import InvalidRequest, UnknownPurchase
from web.problems import BodyTooLarge, Forbidden
from web.security import signed_in, signed_in_or_service

bp = Blueprint("api", __name__, url_prefix="/api")
MAX_JSON_BYTES = 4096


def _deps():
    return current_app.config["TOKENBANK_DEPS"]


def _json_body() -> dict:
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise BodyTooLarge(MAX_JSON_BYTES)
    if not request.is_json:
        raise InvalidRequest("send a JSON object with Content-Type: application/json")
    body = request.get_data(cache=False)
    if len(body) > MAX_JSON_BYTES:
        raise BodyTooLarge(MAX_JSON_BYTES)
    try:
        data = json.loads(body)
    except ValueError:
        raise InvalidRequest("body is not valid JSON") from None
    except RecursionError:  # 2,000 nested arrays fit in 4 KiB; the parser gives up at ~1,000
        raise InvalidRequest("body is nested too deeply") from None
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object")
    return data


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
        raise Forbidden("grants are for trusted backends only")
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
        raise UnknownPurchase("no such purchase for this account")
    return jsonify(found | {"balance": accounts.balance(_deps(), g.uid)["tokenBalance"]})


@bp.post("/purchases/<session_id>/confirm")
@signed_in
def confirm(session_id: str):
    accounts.request_confirmation(_deps(), current_app.config["TOKENBANK_QUEUE"], g.uid, session_id)
    return jsonify(accepted=True), 202
