"""The API contract (web/openapi) against the Flask app, and the one error shape (web/problems.py).

- every route of the app is in the document with its methods, and the document has no path or
  method without a route; the HTML pages are the only routes left out, each named below;
- the document is valid OpenAPI 3.1 (Schemathesis' meta-schema check), every operation has an
  id, a security requirement, a 4xx answer and only Problem-shaped error bodies;
- errors are RFC 9457 problems with the old `error`/`message` (and `field`) members; 401 carries
  a challenge, 405 its Allow header, 404 of an unknown /api/ path is a problem but a page's is HTML;
- GET /api/openapi.json serves the document with the catalog's package and plan ids;
- answers of the app on the fakes are ones the document declares (status, media type, required
  headers, body schema): the balance with its frozen and debt figures, ledger entries with labels,
  references and receipts, and the wallet's CSV, receipt and billing-portal routes, errors included;
  the document's id patterns accept exactly the ids the services accept.
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
CONSOLE = "/admin"  # the support console: staff pages and forms (README, "Support console"), not the public API
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
              if rule.rule not in PAGES and not (rule.rule + "/").startswith(CONSOLE + "/")
              for method in rule.methods - IMPLICIT}
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


# -- answers against the document -----------------------------------------------------------
def _conforms(resp, method: str, path: str) -> None:
    """The answer is one the document declares for the operation: its status, media type, required
    headers (with their patterns) and a body its schema accepts (a unit-level Schemathesis check)."""
    import re

    import jsonschema_rs

    doc = document()
    declared = doc["paths"][path][method]["responses"]
    assert str(resp.status_code) in declared, f"{method.upper()} {path}: {resp.status_code} is not documented"
    response = declared[str(resp.status_code)]
    assert list(response["content"]) == [resp.mimetype], (resp.mimetype, list(response["content"]))
    for name, header in response.get("headers", {}).items():
        value = resp.headers.get(name)
        assert value is not None or not header.get("required"), f"{name} missing"
        if value is not None and "pattern" in header["schema"]:
            assert re.search(header["schema"]["pattern"], value), (name, value)
    body = resp.get_data(as_text=True) if resp.mimetype.startswith("text/") else resp.get_json()
    schema = {**response["content"][resp.mimetype]["schema"], "components": doc["components"]}
    validator = jsonschema_rs.Draft202012Validator(schema, validate_formats=True)
    assert validator.is_valid(body), [e.message for e in validator.iter_errors(body)]


USER_1 = {"Authorization": "Bearer good-token"}


def test_the_balance_schema_has_the_frozen_and_debt_figures(client, deps):
    from core.domain.account import Account

    _conforms(client.get("/api/tokens/balance", headers=USER_1), "get", "/api/tokens/balance")

    def frozen_in_debt(tx):
        account = tx.get(Account, "user_1") or Account("user_1")
        tx.put(account.freeze("dp_1", {"since": 1_700_000_000}).post("refund_x", "refund", -40, {})[0])
    deps.uow.run(frozen_in_debt)
    resp = client.get("/api/tokens/balance", headers=USER_1)
    _conforms(resp, "get", "/api/tokens/balance")
    body = resp.json
    assert (body["frozen"], body["frozenSince"], body["debt"]) == (True, 1_700_000_000, 40)
    required = document()["components"]["schemas"]["Balance"]["required"]
    assert set(body) == set(required), "every member of the answer is documented and required"


def test_the_transaction_schema_has_labels_references_and_receipts(client, deps, store):
    from core.services.balance import grant, spend

    grant(deps, "user_1", 30, "welcome", "g1", "service", create_account=True, source="promo",
          expires_at=int(deps.clock()) + 86400)
    spend(deps, "user_1", 5, "a game", "s1", "user:user_1")
    store.ledger["purchase_cs_1"] = {"userId": "user_1", "type": "purchase", "amount": 50, "balanceAfter": 75,
                                     "packageId": "starter", "checkoutSessionId": "cs_1"}
    store.ledger["allowance_in_1"] = {"userId": "user_1", "type": "subscription_allowance", "amount": 600,
                                      "balanceAfter": 675, "planId": "monthly", "invoiceId": "in_1"}
    store.ledger["spend_h1"] = {"userId": "user_1", "type": "spend", "amount": -1, "balanceAfter": 674,
                                "holdId": "h1", "reason": "=cmd"}
    resp = client.get("/api/tokens/transactions", headers=USER_1)
    _conforms(resp, "get", "/api/tokens/transactions")
    entries = {e["id"]: e for e in resp.json["entries"]}
    assert entries["purchase_cs_1"]["receiptFor"] == "cs_1" and entries["allowance_in_1"]["receiptFor"] == "in_1"
    assert entries["spend_h1"]["label"] == "Spent (reserved tokens used)" and "receiptFor" not in entries["spend_h1"]
    documented = set(document()["components"]["schemas"]["Transaction"]["properties"])
    assert set().union(*map(set, entries.values())) <= documented


def test_the_wallet_routes_answer_as_documented(client, deps, store):
    csv = client.get("/api/tokens/transactions.csv", headers=USER_1)
    assert csv.status_code == 200
    _conforms(csv, "get", "/api/tokens/transactions.csv")
    _conforms(client.get("/api/tokens/transactions.csv"), "get", "/api/tokens/transactions.csv")  # 401
    statuses = [client.get("/api/tokens/transactions.csv", headers=USER_1).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    _conforms(client.get("/api/tokens/transactions.csv", headers=USER_1), "get", "/api/tokens/transactions.csv")
    from google.api_core.exceptions import ServiceUnavailable

    deps.redis.flushall()  # a new minute
    store.fail["list_entries"] = ServiceUnavailable("firestore down")
    down = client.get("/api/tokens/transactions.csv", headers=USER_1)
    assert down.status_code == 503
    _conforms(down, "get", "/api/tokens/transactions.csv")
    del store.fail["list_entries"]

    receipt = "/api/purchases/{payment_id}/receipt"
    store.purchases["cs_paid"] = {"userId": "user_1", "status": "fulfilled", "paymentIntentId": "pi_1"}
    store.purchases["cs_open"] = {"userId": "user_1", "status": "pending", "paymentIntentId": "pi_2"}
    deps.payments.receipts["pi_1"] = "https://pay.stripe.com/receipts/payment/abc"
    answers = {}
    for payment_id in ("cs_paid", "cs_open", "cs_unknown", "pi_1"):
        resp = client.get(f"/api/purchases/{payment_id}/receipt", headers=USER_1)
        _conforms(resp, "get", receipt)
        answers[payment_id] = (resp.status_code, resp.json.get("error"))
    assert answers == {"cs_paid": (200, None), "cs_open": (404, "no_receipt"), "cs_unknown": (404, "not_found"),
                       "pi_1": (400, "invalid_request")}
    deps.payments.wallet_error = ConnectionError("stripe down")
    resp = client.get("/api/purchases/cs_paid/receipt", headers=USER_1)
    assert resp.status_code == 502
    _conforms(resp, "get", receipt)
    deps.payments.wallet_error = None

    resp = client.post("/api/billing-portal", headers=USER_1)
    assert resp.status_code == 404 and resp.json["error"] == "no_subscription"
    _conforms(resp, "post", "/api/billing-portal")
    store.users.setdefault("user_1", {})["subscription"] = {"id": "sub_1", "status": "active", "plan": "monthly"}
    deps.payments.subscriptions["sub_1"] = {"id": "sub_1", "customer": "cus_1", "metadata": {"userId": "user_1"}}
    resp = client.post("/api/billing-portal", headers=USER_1)
    assert resp.status_code == 200
    _conforms(resp, "post", "/api/billing-portal")


def test_the_documents_id_patterns_are_the_services_rules():
    import re

    from core.services.accounts import valid_session_id
    from core.services.wallet import valid_payment_id

    doc = document()["paths"]
    payment = doc["/api/purchases/{payment_id}/receipt"]["get"]["parameters"][0]["schema"]["pattern"]
    session = doc["/api/purchases/{session_id}"]["get"]["parameters"][0]["schema"]["pattern"]
    samples = ["cs_1", "in_1", "pi_1", "cs_", "in_a_b", "cs_x$y", "cs_1 2", "cs_" + "a" * 250, "cs_" + "a" * 251,
               "CS_1", "cs_é", "in_1\n"]
    for sample in samples:
        assert (re.fullmatch(payment.strip("^$"), sample) is not None) == valid_payment_id(sample), sample
        assert (re.fullmatch(session.strip("^$"), sample) is not None) == valid_session_id(sample), sample
