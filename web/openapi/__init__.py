"""The API contract: the OpenAPI 3.1 document of every public route, served at GET /api/openapi.json.

This package is the one source of truth: ``document(catalog)`` assembles it from the path
modules in ``SECTIONS`` (one per blueprint) and the shared parts in components.py; nothing
is kept as a JSON copy. tests/unit/test_openapi.py fails when a Flask route and the document
disagree (a route missing from it, or an entry with no route), and tests/e2e/test_api_contract.py
fuzzes the running system against it (Schemathesis). A new route: add its entry to the section of
its blueprint (or a new module in SECTIONS); a new error code: web/problems.py TITLES.
``python -m web.openapi`` prints the document (without the catalog's ids).
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from web.openapi import components, paths_ops, paths_plans_holds, paths_wallet

SECTIONS = (paths_wallet, paths_plans_holds, paths_ops)
VERSION = "1.0.0"
DESCRIPTION = """Buy, hold and spend in-app tokens. Every error is an RFC 9457 problem
(`application/problem+json`, components.schemas.Problem): `type`, `title`, `status`, `detail`, plus
`error` (a stable code) and `message` (= detail) as before, and `field` when one input is at fault.
Signed-in users send `Authorization: Bearer <Firebase ID token>`; trusted backends `X-Service-Key`
(and name the user with `userId`). Money-moving calls take an idempotency key: the same key and body
replay the first answer, another body with the same key is 409."""

bp = Blueprint("openapi", __name__)


def document(catalog=None) -> dict:
    paths: dict = {}
    for section in SECTIONS:
        for path, operations in section.paths(catalog).items():
            paths.setdefault(path, {}).update(operations)
    return {
        "openapi": "3.1.0",
        "info": {"title": "tokenbank API", "version": VERSION, "description": DESCRIPTION},
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "security": components.USER,
        "tags": [{"name": name} for name in ("purchases", "tokens", "holds", "plans", "stripe", "operations")],
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": components.SCHEMAS, "securitySchemes": components.SECURITY_SCHEMES},
    }


@bp.get("/api/openapi.json")
def openapi_json():
    return jsonify(document(current_app.config["TOKENBANK_DEPS"].catalog))
