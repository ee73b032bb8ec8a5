"""The OpenAPI document's shared parts: security schemes, the Problem shape, the answers' schemas.

Limits are read from the domain (core/domain) so the document cannot drift from the rules the
services apply; ``ref``, ``problems`` and ``json_body`` keep each path entry to a few lines.
"""
from __future__ import annotations

from core.domain.holds import MAX_TTL, MIN_TTL
from core.domain.ledger import MAX_GRANT, MAX_KEY_CHARS, MAX_REASON_CHARS, MAX_SPEND
from web.problems import MEDIA_TYPE, TITLES, TYPE_PREFIX

USER = [{"firebaseIdToken": []}]
USER_OR_SERVICE = [{"firebaseIdToken": []}, {"serviceKey": []}]
PUBLIC: list = []

SECURITY_SCHEMES = {
    "firebaseIdToken": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "`Authorization: Bearer <Firebase ID token>` of the signed-in user (Firebase Auth). A "
                       "missing, malformed, expired, future-dated or foreign-project token is 401."},
    "serviceKey": {
        "type": "apiKey", "in": "header", "name": "X-Service-Key",
        "description": "A trusted backend's key (SERVICE_API_KEYS). The backend names the user with `userId`."},
    "stripeSignature": {
        "type": "apiKey", "in": "header", "name": "Stripe-Signature",
        "description": "Stripe's signature of the raw body with a webhook signing secret (300 s tolerance)."},
    "metricsToken": {
        "type": "http", "scheme": "bearer",
        "description": "METRICS_TOKEN, required whenever it is configured (always in production)."},
}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict, required: tuple | list = (), *, closed: bool = True, **extra) -> dict:
    schema = {"type": "object", "properties": properties, "required": list(required), **extra}
    if closed:
        schema["additionalProperties"] = False
    return schema


INT = {"type": "integer"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
UNIX = {"type": "integer", "description": "unix time, seconds"}
NULLABLE_STR = {"type": ["string", "null"]}
NULLABLE_INT = {"type": ["integer", "null"]}
ID = {"type": "string", "minLength": 1, "maxLength": 128, "description": "a document id: printable, no '/'"}
KEY = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS,
       "description": "idempotency key: printable, no '/'; the same key and body replay the first answer"}
REASON = {"type": "string", "minLength": 1, "maxLength": MAX_REASON_CHARS, "description": "printable text"}
TTL = {"type": "integer", "minimum": MIN_TTL, "maximum": MAX_TTL}


def or_null(schema: dict, meaning: str) -> dict:
    """An optional member that also takes null, meaning what leaving it out means."""
    nullable = {**schema, "type": [schema["type"], "null"], "description": f"null or absent: {meaning}"}
    if "enum" in schema:
        nullable["enum"] = [*schema["enum"], None]
    return nullable


def amount(minimum: int, maximum: int) -> dict:
    return {"type": "integer", "minimum": minimum, "maximum": maximum, "description": "whole tokens"}


_SUBSCRIPTION = _obj({
    "id": STR, "status": STR, "live": BOOL, "plan": NULLABLE_STR, "planName": NULLABLE_STR,
    "tokensPerPeriod": NULLABLE_INT, "priceCents": NULLABLE_INT, "currency": NULLABLE_STR, "interval": NULLABLE_STR,
    "currentPeriodEnd": NULLABLE_INT, "cancelAtPeriodEnd": BOOL},
    ("id", "status", "live", "plan", "planName", "tokensPerPeriod", "priceCents", "currency", "interval",
     "currentPeriodEnd", "cancelAtPeriodEnd"))

PROBLEM = _obj({
    "type": {"type": "string", "format": "uri", "description": f"`{TYPE_PREFIX}<error>`"},
    "title": STR, "status": {"type": "integer", "minimum": 400, "maximum": 599}, "detail": STR,
    "error": {"type": "string", "enum": sorted(TITLES), "description": "the code (as before problem details)"},
    "message": {"type": "string", "description": "the same as detail (as before problem details)"},
    "field": {"type": ["string", "null"], "description": "400: the input at fault, or null"},
    "balance": INT, "available": INT, "needed": INT, "retryAfterSeconds": INT, "limit": INT,
    "subscription": {"oneOf": [ref("Subscription"), {"type": "null"}]}},
    ("type", "title", "status", "detail", "error", "message"), closed=False,
    description="RFC 9457 problem details; every error answer of the API. Extension members: `balance`, "
                "`available`, `needed` (402), `retryAfterSeconds` (429), `subscription` (plan routes), "
                "`limit` (the webhook's 413).")

_POSTED = {"entryId": STR, "amount": INT, "balance": INT, "available": INT, "replayed": BOOL, "userId": STR}

SCHEMAS = {
    "Problem": PROBLEM,
    "InsufficientFundsProblem": {"allOf": [ref("Problem"), {"required": ["balance", "available", "needed"]}]},
    "RateLimitedProblem": {"allOf": [ref("Problem"), {"required": ["retryAfterSeconds"]}]},
    "Subscription": _SUBSCRIPTION,
    "SubscriptionState": _obj({"subscription": {"oneOf": [ref("Subscription"), {"type": "null"}]}},
                              ("subscription",)),
    "Posted": _obj(_POSTED, ("entryId", "amount", "balance", "replayed", "userId"),
                   description="one ledger entry; `available` is absent on a replay"),
    "Balance": _obj({
        "userId": STR, "tokenBalance": INT, "totalTokensPurchased": INT, "totalTokensEarned": INT,
        "totalTokensSpent": INT, "totalTokensExpired": INT, "available": INT, "held": INT,
        "expiring": {"type": "array", "items": _obj({"amount": INT, "expiresAt": UNIX}, ("amount", "expiresAt"))}},
        ("userId", "tokenBalance", "totalTokensPurchased", "totalTokensEarned", "totalTokensSpent",
         "totalTokensExpired", "available", "held", "expiring")),
    "Transactions": _obj({
        "entries": {"type": "array", "items": _obj({
            "id": STR, "type": STR, "amount": INT, "balanceAfter": INT, "createdAt": STR, "packageId": STR,
            "checkoutSessionId": STR, "reason": STR}, ("id",))},
        "nextCursor": NULLABLE_STR}, ("entries", "nextCursor")),
    "CheckoutStarted": _obj({"sessionId": STR, "url": {"type": "string", "format": "uri"}, "expiresAt": UNIX},
                            ("sessionId", "url", "expiresAt")),
    "Purchase": _obj({
        "sessionId": STR, "status": STR, "packageId": STR, "tokens": INT, "amountPaid": INT, "currency": STR,
        "reason": STR, "createdAt": STR, "fulfilledAt": STR, "balance": INT}, ("sessionId", "balance")),
    "Accepted": _obj({"accepted": {"const": True}}, ("accepted",)),
    "PlanCheckout": _obj({
        "sessionId": STR, "planId": NULLABLE_STR, "planName": NULLABLE_STR, "credited": BOOL, "tokens": NULLABLE_INT,
        "balance": INT, "subscription": {"oneOf": [ref("Subscription"), {"type": "null"}]}},
        ("sessionId", "planId", "planName", "credited", "tokens", "balance", "subscription")),
    "HoldPlaced": _obj({"holdId": STR, "amount": INT, "expiresAt": UNIX, "available": INT, "replayed": BOOL,
                        "userId": STR}, ("holdId", "amount", "expiresAt", "available", "replayed", "userId")),
    "HoldCaptured": _obj({"holdId": STR, "entryId": NULLABLE_STR, "captured": INT, "released": INT, "balance": INT,
                          "available": INT, "replayed": BOOL},
                         ("holdId", "entryId", "captured", "released", "balance", "available", "replayed")),
    "HoldReleased": _obj({"holdId": STR, "status": {"enum": ["open", "captured", "released", "expired"]},
                          "released": INT, "available": INT}, ("holdId", "status", "released", "available")),
    "HoldExtended": _obj({"holdId": STR, "amount": INT, "expiresAt": UNIX}, ("holdId", "amount", "expiresAt")),
    "OpenHolds": _obj({"holds": {"type": "array", "items": _obj({
        "holdId": STR, "amount": INT, "expiresAt": UNIX, "reason": NULLABLE_STR, "createdAt": UNIX},
        ("holdId", "amount", "expiresAt", "reason", "createdAt"))}, "userId": STR}, ("holds", "userId")),
    "WebhookReceived": _obj({"received": {"const": True}, "id": STR, "handled": BOOL}, ("received", "id", "handled")),
    "Health": _obj({"status": {"const": "ok"}}, ("status",)),
    "Readiness": _obj({"status": {"enum": ["ready", "not ready"]}, "checks": _obj(
        {"redis": STR, "firestore": STR, "broker": STR}, ("redis", "firestore", "broker"))}, ("status", "checks")),
}

_HEADERS = {
    401: {"WWW-Authenticate": {"required": True, "schema": STR, "description": "the bearer challenge"}},
    429: {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
    503: {"Retry-After": {"required": True, "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
}
_PROBLEM_SCHEMA = {402: "InsufficientFundsProblem", 429: "RateLimitedProblem"}


def problems(*answers: tuple[int, str]) -> dict:
    """Error responses: ``(status, what it means on this route)`` each, all of the Problem shape."""
    out = {}
    for status, description in answers:
        response = {"description": description,
                    "content": {MEDIA_TYPE: {"schema": ref(_PROBLEM_SCHEMA.get(status, "Problem"))}}}
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        out[str(status)] = response
    return out


def ok(schema: str, description: str, status: int = 200) -> dict:
    return {str(status): {"description": description, "content": {"application/json": {"schema": ref(schema)}}}}


def json_body(schema: dict, required: bool = True) -> dict:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


BAD_BODY = (400, "the body is not a JSON object, has an unknown field, or a field is missing or invalid "
                 "(`field` names it)")
TOO_LARGE = (413, "the body is over 4 KiB")
UNAVAILABLE = (503, "a backing service is down or the account is busy: nothing changed; retry after Retry-After")
NO_USER = (401, "no valid Firebase ID token")
NO_CALLER = (401, "no valid Firebase ID token, or a wrong X-Service-Key")
SPEND_LIMIT, GRANT_LIMIT = MAX_SPEND, MAX_GRANT
