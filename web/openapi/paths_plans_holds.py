"""The document's entries for web/plans_api.py (the token plan) and web/holds_api.py (holds)."""
from __future__ import annotations

from web.openapi.components import (
    BAD_BODY, ID, KEY, NO_CALLER, NO_USER, REASON, SPEND_LIMIT, STR, TOO_LARGE, TTL, UNAVAILABLE, USER,
    USER_OR_SERVICE, amount, json_body, ok, or_null, problems,
)
from web.openapi.paths_wallet import BAD_SESSION, SESSION_ID

HOLD_ID = {"name": "hold_id", "in": "path", "required": True, "schema": STR,
           "description": "`holdId` of the placed hold; another user's or an unknown one is 404"}
USER_QUERY = {"name": "userId", "in": "query", "required": False, "schema": STR,
              "description": "with X-Service-Key: the user, when the body does not name one (ignored for users)"}
USER_ID = {**ID, "description": "required with X-Service-Key (here or in the query); a user may only name themself"}
NOT_FOUND_HOLD = (404, "no such hold for this user")


def _closed(properties: dict, required: tuple = ()) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}


def _hold_op(op_id: str, summary: str, answers: dict, body: dict | None, *errors, body_required: bool = True,
             path_id: bool = True) -> dict:
    op = {"tags": ["holds"], "operationId": op_id, "summary": summary, "security": USER_OR_SERVICE,
          "parameters": ([HOLD_ID] if path_id else []) + [USER_QUERY],
          "responses": {**answers, **problems(*sorted(errors))}}
    if body is not None:
        op["requestBody"] = json_body(body, body_required)
    return op


def paths(catalog=None) -> dict:
    return {
        "/api/subscription": {"get": {
            "tags": ["plans"], "operationId": "getSubscription", "security": USER,
            "summary": "The user's mirrored subscription, or null",
            "responses": {**ok("SubscriptionState", "the plan"), **problems(NO_USER, UNAVAILABLE)}}},
        "/api/subscription/cancel": {"post": {
            "tags": ["plans"], "operationId": "cancelSubscription", "security": USER,
            "summary": "Cancel the user's own plan at the period's end (default) or now",
            "requestBody": json_body(_closed({"atPeriodEnd": {"type": "boolean", "default": True}}), False),
            "responses": {**ok("SubscriptionState", "the plan after Stripe's answer"), **problems(
                BAD_BODY, NO_USER, (404, "no live plan (`subscription` null)"),
                (409, "already set to end (`subscription` as it is)"), TOO_LARGE,
                (502, "Stripe refused: nothing changed"), UNAVAILABLE)}}},
        "/api/plan-checkouts/{session_id}": {"get": {
            "tags": ["plans"], "operationId": "getPlanCheckout", "security": USER, "parameters": [SESSION_ID],
            "summary": "The success page's view of the user's own plan checkout",
            "responses": {**ok("PlanCheckout", "whether the first allowance landed"), **problems(
                BAD_SESSION, NO_USER, (404, "not a plan checkout this user started"), UNAVAILABLE)}}},
        "/api/tokens/holds": {
            "post": _hold_op(
                "placeHold", "Reserve tokens before work starts",
                {**ok("HoldPlaced", "placed", 201), **ok("HoldPlaced", "the same key and body: the first answer")},
                _closed({"amount": amount(1, SPEND_LIMIT), "idempotencyKey": KEY,
                         "ttlSeconds": or_null(TTL, "900 seconds"), "reason": or_null(REASON, "no reason"),
                         "userId": USER_ID}, ("amount", "idempotencyKey")),
                BAD_BODY, NO_CALLER, (402, "`available` is below the amount"),
                (409, "the idempotency key was used for another request"), TOO_LARGE,
                (423, "spending is paused while a dispute is open"), UNAVAILABLE, path_id=False),
            "get": _hold_op("listHolds", "The user's open holds", ok("OpenHolds", "open holds, oldest first"), None,
                            (400, "X-Service-Key without `userId`"), NO_CALLER, UNAVAILABLE, path_id=False)},
        "/api/tokens/holds/{hold_id}/capture": {"post": _hold_op(
            "captureHold", "Take 0 … the held amount; the rest is released at once",
            ok("HoldCaptured", "captured (the same key and body: replayed)"),
            _closed({"amount": amount(0, SPEND_LIMIT), "idempotencyKey": KEY, "userId": USER_ID},
                    ("amount", "idempotencyKey")),
            (400, "a bad body, or an amount over the held one"), NO_CALLER, NOT_FOUND_HOLD,
            (409, "already captured otherwise, or released"), (410, "the hold expired"), TOO_LARGE, UNAVAILABLE)},
        "/api/tokens/holds/{hold_id}/release": {"post": _hold_op(
            "releaseHold", "Release the hold (idempotent)", ok("HoldReleased", "released, or as it already was"),
            _closed({"userId": USER_ID}), BAD_BODY, NO_CALLER, NOT_FOUND_HOLD, (409, "the hold was captured"),
            TOO_LARGE, UNAVAILABLE, body_required=False)},
        "/api/tokens/holds/{hold_id}/extend": {"post": _hold_op(
            "extendHold", "A new expiry, ttlSeconds from now", ok("HoldExtended", "the new expiresAt"),
            _closed({"ttlSeconds": TTL, "userId": USER_ID}, ("ttlSeconds",)),
            BAD_BODY, NO_CALLER, NOT_FOUND_HOLD, (409, "captured or released"), (410, "the hold expired"),
            TOO_LARGE, UNAVAILABLE)},
    }
