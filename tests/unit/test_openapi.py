"""The API contract (web/openapi) against the Flask app, and the one error shape (web/problems.py).

- every route of the app is in the document with its methods, and the document has no path or
  method without a route; the HTML pages are the only routes left out, each named below;
- the document is valid OpenAPI 3.1 (Schemathesis' meta-schema check), every operation has an
  id, a security requirement, a 4xx answer and only Problem-shaped error bodies;
- errors are RFC 9457 problems with the old `error`/`message` (and `field`) members; 401 carries
  a challenge, 405 its Allow header, 404 of an unknown /api/ path is a problem but a page's is HTML;
- GET /api/openapi.json serves the document with the catalog's package and plan ids.
"""
from __future__ import annotations

import dataclasses

import pytest
import schemathesis

from core.domain.errors import Unauthorized
from tests.unit.fakes import FakeQueue
from web.app import create_app
from web.openapi import document
from web.problems import MEDIA_TYPE, TITLES

# Routes that are HTML pages for people, not API: the only ones the document leaves out.
PAGES = {"/", "/buy-tokens", "/purchase/success", "/purchase/cancel", "/static/<path:filename>"}
IMPLICIT = {"HEAD", "OPTIONS"}


def _verify(token: str) -> str:
    if token != "good-token":
        raise Unauthorized("token rejected")
    return "user_1"


@pytest.fixture
def app(deps):
    return create_app(dataclasses.replace(deps, verify_id_token=_verify), FakeQueue())


@pytest.fixture
def client(app):
    return app.test_client()


def _openapi_path(rule: str) -> str:
    for converter in ("<path:", "<int:", "<"):
        rule = rule.replace(converter, "{")
    return rule.replace(">", "}")


def test_every_route_is_documented_and_every_documented_operation_has_a_route(app):
    routes = {(_openapi_path(rule.rule), method.lower()) for rule in app.url_map.iter_rules()
              if rule.rule not in PAGES for method in rule.methods - IMPLICIT}
    documented = {(path, method) for path, item in document()["paths"].items() for method in item}
    assert routes - documented == set(), "routes missing from the OpenAPI document (web/openapi)"
    assert documented - routes == set(), "documented operations with no Flask route"
    pages = {rule.rule for rule in app.url_map.iter_rules()} & PAGES
    assert pages == PAGES, f"page routes gone (remove them from PAGES): {PAGES - pages}"


def test_the_document_is_valid_openapi_3_1_and_every_operation_is_complete():
    doc = document()
    schemathesis.openapi.from_dict(doc).validate()
    assert doc["openapi"].startswith("3.1")
    ids = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            label = f"{method.upper()} {path}"
            ids.append(op["operationId"])
            assert "security" in op, f"{label}: say who may call it"
            statuses = set(op["responses"])
            assert any(s.startswith("2") for s in statuses), label
            if path.startswith("/api/") and op["security"] and op["security"] != [{"stripeSignature": []}]:
                assert "401" in statuses, f"{label}: a protected route answers 401"  # (a bad signature: 400)
            for status, response in op["responses"].items():
                if int(status) >= 400 and path != "/readyz":
                    assert list(response["content"]) == [MEDIA_TYPE], f"{label} {status}: a problem"
    assert len(ids) == len(set(ids)), "operationIds are unique"
    assert sorted(doc["components"]["schemas"]["Problem"]["properties"]["error"]["enum"]) == sorted(TITLES)


def test_the_document_is_served_with_the_catalogs_ids(client, deps):
    resp = client.get("/api/openapi.json")
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    body = resp.json
    options = body["paths"]["/api/checkout"]["post"]["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert options[0]["properties"]["packageId"]["enum"] == sorted(p.id for p in deps.catalog.packages)
    assert options[1]["properties"]["planId"]["enum"] == sorted(p.id for p in deps.catalog.plans)


def _problem(resp, status: int, error: str) -> dict:
    assert resp.status_code == status, resp.data
    assert resp.mimetype == MEDIA_TYPE
    body = resp.json
    assert body["type"] == f"urn:tokenbank:problem:{error}" and body["title"] == TITLES[error]
    assert body["status"] == status and body["error"] == error
    assert body["detail"] == body["message"] and body["detail"]
    return body


def test_a_bad_body_is_a_problem_naming_the_field(client):
    resp = client.post("/api/tokens/spend", json={"amount": 0, "reason": "x", "idempotencyKey": "k"},
                       headers={"Authorization": "Bearer good-token"})
    assert _problem(resp, 400, "invalid_request")["field"] == "amount"
    resp = client.post("/api/tokens/spend", data="{not json", content_type="application/json",
                       headers={"Authorization": "Bearer good-token"})
    assert _problem(resp, 400, "invalid_request")["field"] is None


def test_refusals_of_the_caller_are_problems(client):
    resp = client.get("/api/tokens/balance")
    _problem(resp, 401, "unauthorized")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = client.post("/api/tokens/spend", json={}, headers={"X-Service-Key": "wrong"})
    _problem(resp, 401, "unauthorized")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = client.post("/api/tokens/grant", json={}, headers={"Authorization": "Bearer good-token"})
    _problem(resp, 403, "forbidden")


def test_insufficient_funds_carries_the_figures(client):
    resp = client.post("/api/tokens/spend", json={"amount": 5, "reason": "x", "idempotencyKey": "k1"},
                       headers={"Authorization": "Bearer good-token"})
    body = _problem(resp, 402, "insufficient_funds")
    assert (body["balance"], body["available"], body["needed"]) == (0, 0, 5)


def test_unknown_paths_wrong_methods_and_big_bodies_are_problems_on_the_api(client):
    _problem(client.get("/api/nothing-here"), 404, "not_found")
    resp = client.delete("/api/tokens/spend")
    _problem(resp, 405, "method_not_allowed")
    assert "POST" in resp.headers["Allow"]
    resp = client.post("/api/tokens/spend", data="x" * 5000, content_type="application/json",
                       headers={"Authorization": "Bearer good-token"})
    _problem(resp, 413, "too_large")


def test_a_pages_not_found_stays_html(client):
    resp = client.get("/no-such-page")
    assert resp.status_code == 404 and resp.mimetype == "text/html"


def test_an_unexpected_error_on_the_api_is_a_500_problem(app, deps, monkeypatch):
    app.testing = False  # as under gunicorn: the error is answered, not raised into the test

    def broken(*_):
        raise KeyError("boom")
    monkeypatch.setattr("core.services.accounts.balance", broken)
    resp = app.test_client().get("/api/tokens/balance", headers={"Authorization": "Bearer good-token"})
    assert "boom" not in _problem(resp, 500, "internal_error")["detail"]


def test_a_refused_webhook_is_a_problem_with_the_reason(client):
    resp = client.post("/api/stripe/webhook", data=b"{}")
    assert _problem(resp, 400, "webhook_refused")["detail"] == "missing Stripe-Signature header"


def test_a_body_nested_past_the_parsers_depth_is_a_400_not_a_500(client):
    deep = "[" * 2000 + "]" * 2000  # under 4 KiB; json.loads raises RecursionError
    resp = client.post("/api/tokens/spend", data=deep, content_type="application/json",
                       headers={"Authorization": "Bearer good-token"})
    assert _problem(resp, 400, "invalid_request")["detail"] == "body is nested too deeply"


def test_a_signed_event_nested_past_the_parsers_depth_is_malformed():
    from core.domain.errors import MalformedEvent
    from core.domain.stripe_events import parse_event

    with pytest.raises(MalformedEvent):
        parse_event('{"id": "evt_1", "data": ' + "[" * 3000 + "]" * 3000 + "}")
