"""Token holds: reserve before work, capture what it used, release the rest (core/services/holds.py).

    POST /api/tokens/holds                     {"amount", "idempotencyKey", "ttlSeconds"?, "reason"?}  201
    GET  /api/tokens/holds                     the open holds
    POST /api/tokens/holds/<id>/capture        {"amount", "idempotencyKey"}
    POST /api/tokens/holds/<id>/release        (no body needed)
    POST /api/tokens/holds/<id>/extend         {"ttlSeconds"}

The signed-in user acts on their own holds; a trusted backend (X-Service-Key) names the
user: ``userId`` in the body, or the query string for GET and body-less calls. Another
user's hold is answered as if it did not exist (404). Refusals are the service's exceptions,
answered by web/problems.py.
"""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from core.services import holds
from web import api
from web.security import signed_in_or_service

bp = Blueprint("holds_api", __name__, url_prefix="/api/tokens/holds")


def _body(optional: bool = False) -> dict:
    if optional and not request.get_data(cache=True):
        return {}
    return api._json_body()


def _who(body: dict) -> tuple[str, str]:
    if g.service and "userId" not in body and "userId" in request.args:
        body = {**body, "userId": request.args["userId"]}
    return api._target_user(body)


@bp.post("")
@signed_in_or_service
def place():
    body = _body()
    api._fields(body, {"amount", "idempotencyKey", "ttlSeconds", "reason", "userId"})
    user_id, actor = _who(body)
    answer = holds.place(api._deps(), user_id, body.get("amount"), body.get("idempotencyKey"),
                         body.get("ttlSeconds"), body.get("reason"), actor)
    return jsonify(answer | {"userId": user_id}), 200 if answer["replayed"] else 201


@bp.get("")
@signed_in_or_service
def list_open():
    user_id, _ = _who({})
    return jsonify(holds.open_holds(api._deps(), user_id) | {"userId": user_id})


@bp.post("/<hold_id>/capture")
@signed_in_or_service
def capture(hold_id: str):
    body = _body()
    api._fields(body, {"amount", "idempotencyKey", "userId"})
    user_id, actor = _who(body)
    return jsonify(holds.capture(api._deps(), user_id, hold_id, body.get("amount"), body.get("idempotencyKey"), actor))


@bp.post("/<hold_id>/release")
@signed_in_or_service
def release(hold_id: str):
    body = _body(optional=True)
    api._fields(body, {"userId"})
    user_id, actor = _who(body)
    return jsonify(holds.release(api._deps(), user_id, hold_id, actor))


@bp.post("/<hold_id>/extend")
@signed_in_or_service
def extend(hold_id: str):
    body = _body()
    api._fields(body, {"ttlSeconds", "userId"})
    user_id, actor = _who(body)
    return jsonify(holds.extend(api._deps(), user_id, hold_id, body.get("ttlSeconds"), actor))
