"""The document's entries for web/api.py: checkout, spend, grant, balance, ledger, purchases.

``paths(catalog)`` lists the catalog's package and plan ids as enums when a catalog is given
(the served document); without one they are plain strings.
"""
from __future__ import annotations

from web.openapi.components import (
    BAD_BODY, GRANT_LIMIT, ID, INT, KEY, NO_CALLER, NO_USER, REASON, SPEND_LIMIT, STR, TOO_LARGE, UNAVAILABLE,
    USER, USER_OR_SERVICE, amount, json_body, ok, or_null, problems,
)

SESSION_ID = {"name": "session_id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^cs_[A-Za-z0-9_]{1,250}$"},
              "description": "a Stripe Checkout Session id this user started"}
BAD_SESSION = (400, "`session_id` is not a Checkout Session id")


def _ids(values, fallback: dict) -> dict:
    return {"type": "string", "enum": sorted(values)} if values is not None else fallback


def paths(catalog=None) -> dict:
    package = _ids(None if catalog is None else [p.id for p in catalog.packages], STR)
    plan = _ids(None if catalog is None else [p.id for p in catalog.plans], STR)
    spend = {"type": "object", "additionalProperties": False, "required": ["amount", "reason", "idempotencyKey"],
             "properties": {"amount": amount(1, SPEND_LIMIT), "reason": REASON, "idempotencyKey": KEY,
                            "userId": {**ID, "description": "required with X-Service-Key; a user may only name "
                                                            "themself"}}}
    grant = {"type": "object", "additionalProperties": False, "required": ["userId", "amount", "reason",
                                                                           "idempotencyKey"],
             "properties": {"userId": ID, "amount": amount(1, GRANT_LIMIT), "reason": REASON, "idempotencyKey": KEY,
                            "createAccount": {"type": "boolean", "default": False},
                            "expiresAt": or_null({"type": "integer"}, "never expires; else unix seconds, in the "
                                                                      "future and within 10 years"),
                            "source": or_null({"type": "string", "enum": ["grant", "promo"]}, "grant")}}
    checkout = {"oneOf": [
        {"type": "object", "additionalProperties": False, "required": ["packageId"],
         "properties": {"packageId": package}},
        {"type": "object", "additionalProperties": False, "required": ["planId"], "properties": {"planId": plan}}]}
    return {
        "/api/checkout": {"post": {
            "tags": ["purchases"], "operationId": "startCheckout", "security": USER,
            "summary": "Start a Stripe Checkout for a package (`packageId`) or a token plan (`planId`)",
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                            "description": "the same key answers the same session"}],
            "requestBody": json_body(checkout),
            "responses": {**ok("CheckoutStarted", "the session to redirect to"), **problems(
                (400, "unknown package or plan, both or neither, a bad field or Idempotency-Key"), NO_USER,
                (409, "the Idempotency-Key started a checkout for something else"), TOO_LARGE,
                (429, "the purchase limit (open checkouts count); retry after Retry-After"),
                (502, "Stripe refused: nothing was reserved"), UNAVAILABLE)}}},
        "/api/tokens/spend": {"post": {
            "tags": ["tokens"], "operationId": "spendTokens", "security": USER_OR_SERVICE,
            "summary": "Spend tokens (the signed-in user, or a backend for `userId`)",
            "requestBody": json_body(spend),
            "responses": {**ok("Posted", "the spend entry (the same key and body: the first answer, replayed)"),
                          **problems(BAD_BODY, NO_CALLER, (402, "`available` is below the amount"),
                                     (409, "the idempotency key was used for another request"), TOO_LARGE,
                                     (423, "spending is paused while a dispute is open"), UNAVAILABLE)}}},
        "/api/tokens/grant": {"post": {
            "tags": ["tokens"], "operationId": "grantTokens", "security": [{"serviceKey": []}],
            "summary": "Grant tokens to a user (trusted backends only)",
            "requestBody": json_body(grant),
            "responses": {**ok("Posted", "the grant entry (replayed for the same key and body)"), **problems(
                BAD_BODY, NO_CALLER, (403, "a user token: grants are for trusted backends"),
                (404, "no such account and `createAccount` is not true"),
                (409, "the idempotency key was used for another request"), TOO_LARGE, UNAVAILABLE)}}},
        "/api/tokens/balance": {"get": {
            "tags": ["tokens"], "operationId": "getBalance", "security": USER,
            "summary": "The user's balance, totals, what is available, held and expiring",
            "responses": {**ok("Balance", "the figures"), **problems(NO_USER, UNAVAILABLE)}}},
        "/api/tokens/transactions": {"get": {
            "tags": ["tokens"], "operationId": "listTransactions", "security": USER,
            "summary": "The user's ledger, newest first",
            "parameters": [
                {"name": "limit", "in": "query", "required": False,
                 "schema": {**INT, "minimum": 1, "maximum": 100, "default": 20}},
                {"name": "cursor", "in": "query", "required": False, "schema": STR,
                 "description": "`nextCursor` of the previous page"}],
            "responses": {**ok("Transactions", "one page"), **problems(
                (400, "`limit` is not 1-100, or `cursor` is not one of this user's entries"), NO_USER,
                UNAVAILABLE)}}},
        "/api/purchases/{session_id}": {"get": {
            "tags": ["purchases"], "operationId": "getPurchase", "security": USER, "parameters": [SESSION_ID],
            "summary": "The user's own purchase and balance",
            "responses": {**ok("Purchase", "the purchase"), **problems(
                BAD_SESSION, NO_USER, (404, "no such purchase for this user (another user's included)"),
                UNAVAILABLE)}}},
        "/api/purchases/{session_id}/confirm": {"post": {
            "tags": ["purchases"], "operationId": "confirmPurchase", "security": USER, "parameters": [SESSION_ID],
            "summary": "Ask the workers to fulfil the user's own checkout from what Stripe says (idempotent)",
            "responses": {**ok("Accepted", "queued", 202), **problems(
                BAD_SESSION, NO_USER, (404, "a session this user did not start: nothing is queued"),
                (429, "more than the confirmations allowed per minute"), UNAVAILABLE)}}},
    }
