"""The sandbox refuses what Stripe refuses and accepts what it accepts (issue 9).

Every route the sandbox serves is found in its Flask url_map (a route added later is covered
by itself) and must have an entry in sandbox/strict.py's ROUTES that names the params class
the installed SDK's service uses for it. On every route an unknown parameter (top-level and
nested) and an invalid `expand` are refused in Stripe's error shape; Checkout refuses
parameters of the other mode; what tokenbank sends (its Checkout Sessions, the Payments
adapter's retrieves and lists, reconciliation's lists) and what the Stripe CLI sends are
accepted; every object the sandbox renders carries only fields the SDK's class declares.

The sandbox runs in-process (sandbox.inprocess: the real SDK, the real Flask app, no socket);
tests/integration/test_stripe_cli.py runs the real CLI against a real sandbox process.
"""
from __future__ import annotations

import re
import time
from dataclasses import replace
from urllib.parse import urlencode

import pytest
import stripe

from core.adapters.stripe_payments import StripePayments
from core.services.checkout import start_checkout, start_plan_checkout
from core.services.reconcile import reconcile
from core.stripe_api import STRIPE_API_VERSION
from sandbox import inprocess, strict
from sandbox.app import create_app
from sandbox.config import Config
from tests.unit.fakes import make_deps

AUTH = {"Authorization": f"Bearer {inprocess.TEST_KEY}"}
PINNED = {**AUTH, "Stripe-Version": STRIPE_API_VERSION}  # what the SDK sends
FALLBACK = "v1.unknown_route"


@pytest.fixture(autouse=True)
def _clean():
    """Overrides the integration conftest's autouse cleaner: no Redis or Firestore here."""
    yield


def served_routes() -> list[tuple[str, str]]:
    """(METHOD, rule) of every Stripe API route of the sandbox app, from its url_map."""
    app = create_app(Config(), inprocess.BASE)
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1/") and rule.endpoint != FALLBACK:
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                out.add((method, rule.rule))
    return sorted(out)


ROUTES = served_routes()
ROUTE_IDS = [f"{m} {r}" for m, r in ROUTES]


def url_of(rule: str) -> str:
    return re.sub(r"<[^>]+>", "x_strictness_probe", rule)


def call(client, method: str, rule_or_path: str, params: dict | list | None = None, headers=PINNED):
    """One request as a form-encoding client sends it: GET/DELETE in the query, POST in the body."""
    path = url_of(rule_or_path)
    body = urlencode(params or {}, doseq=False)
    if method in ("GET", "DELETE"):
        return client.open(path + ("?" + body if body else ""), method=method, headers=headers)
    return client.open(path, method=method, data=body, headers={**headers,
                       "Content-Type": "application/x-www-form-urlencoded"})


def assert_stripe_error(resp, status: int, message: str, code: str | None = None, param: str | None = None):
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.headers["Content-Type"].startswith("application/json") and resp.headers["Request-Id"].startswith("req_")
    error = resp.get_json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"] == message, error
    assert error.get("code") == code and error.get("param") == param, error
    if code:
        assert error["doc_url"] == "https://stripe.com/docs/error-codes/" + code.replace("_", "-")
    assert error["request_log_url"].startswith("https://dashboard.stripe.com/test/logs/req_")


@pytest.fixture
def sdk():
    return inprocess.client()


@pytest.fixture
def http(sdk):
    return sdk.http.test_client


# --- the route registry ---------------------------------------------------------------------------

def test_the_sandbox_serves_the_routes_it_documents():
    for route in [("GET", "/v1/charges"), ("GET", "/v1/events"), ("POST", "/v1/refunds"),
                  ("POST", "/v1/billing_portal/sessions"),
                  ("POST", "/v1/checkout/sessions"), ("POST", "/v1/payment_pages/<obj_id>/confirm")]:
        assert route in ROUTES


@pytest.mark.parametrize("method,rule", ROUTES, ids=ROUTE_IDS)
def test_every_served_route_has_an_entry_in_the_registry(method, rule):
    assert strict.route_for(method, rule) is not None, (
        f"{method} {rule} is served but has no entry in sandbox/strict.py ROUTES; add "
        f"{strict.route_key(method, rule)}: Route({strict.sdk_params_class(method, rule)!r}, '<object>'"
        f"{', True' if method == 'GET' and not rule.endswith('>') else ''})")


def test_each_registry_entry_is_the_params_class_the_sdk_uses_for_that_route():
    served = {strict.route_key(m, r) for m, r in ROUTES}
    for key, route in strict.ROUTES.items():
        if isinstance(route.params, str):
            assert strict.sdk_params_class(*key) == route.params, key
        else:
            assert key[1].startswith("/v1/payment_pages/"), f"{key}: only the CLI's private routes are hand-written"
        assert strict.resource_class(route.returns), key
        strict.params_shape(key)
    assert strict.unresolved_annotations() == []
    assert {("GET", "/v1/payment_pages/{id}"), ("POST", "/v1/payment_pages/{id}/confirm")} <= served


# --- unknown parameters ----------------------------------------------------------------------------

@pytest.mark.parametrize("method,rule", ROUTES, ids=ROUTE_IDS)
def test_an_unknown_parameter_is_refused_on_every_route(http, method, rule):
    resp = call(http, method, rule, {"bogus_param": "1"})
    assert_stripe_error(resp, 400, "Received unknown parameter: bogus_param", "parameter_unknown", "bogus_param")


def _a_hash_param(method: str, rule: str) -> str | None:
    if strict.route_for(method, rule) is None:
        return None  # test_every_served_route_has_an_entry_in_the_registry fails for it
    shape = strict.params_shape(strict.route_key(method, rule))
    for name, child in sorted((shape.fields or {}).items()):
        if child.fields:
            return name
    return None


@pytest.mark.parametrize("method,rule", [r for r in ROUTES if _a_hash_param(*r)],
                         ids=[f"{m} {r}" for m, r in ROUTES if _a_hash_param(m, r)])
def test_an_unknown_nested_parameter_is_refused(http, method, rule):
    name = _a_hash_param(method, rule)
    resp = call(http, method, rule, {f"{name}[bogus]": "1"})
    assert_stripe_error(resp, 400, f"Received unknown parameter: {name}[bogus]", "parameter_unknown", f"{name}[bogus]")


def test_unknown_parameters_deep_in_checkout_and_on_lists(http):
    deep = {"mode": "payment", "line_items[0][quantity]": "1", "line_items[0][price_data][currency]": "usd",
            "line_items[0][price_data][unit_amount]": "500", "line_items[0][price_data][product_data][name]": "x",
            "line_items[0][price_data][product_data][colour]": "red"}
    assert_stripe_error(call(http, "POST", "/v1/checkout/sessions", deep), 400,
                        "Received unknown parameter: line_items[0][price_data][product_data][colour]",
                        "parameter_unknown", "line_items[0][price_data][product_data][colour]")
    assert_stripe_error(call(http, "GET", "/v1/events", {"created[since]": "1"}), 400,
                        "Received unknown parameter: created[since]", "parameter_unknown", "created[since]")
    assert_stripe_error(call(http, "POST", "/v1/refunds", {"charge": "ch_x", "refund_everything": "true"}), 400,
                        "Received unknown parameter: refund_everything", "parameter_unknown", "refund_everything")


def test_values_of_the_wrong_kind_are_refused(http):
    cases = [
        ("POST", "/v1/refunds", {"charge": "ch_x", "amount": "ten"}, "Invalid integer: ten", "amount"),
        ("POST", "/v1/refunds", {"charge": "ch_x", "reason": "changed_mind"},
         "Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer", "reason"),
        ("POST", "/v1/refunds", {"charge": "ch_x", "origin": "bank"}, "Invalid origin: must be one of customer_balance",
         "origin"),
        ("POST", "/v1/checkout/sessions", {"mode": "donation"},
         "Invalid mode: must be one of payment, setup, or subscription", "mode"),
        ("GET", "/v1/charges", {"limit": "many"}, "Invalid integer: many", "limit"),
        ("GET", "/v1/events", {"delivery_success": "maybe"}, "Invalid boolean: maybe", "delivery_success"),
        ("POST", "/v1/customers", {"metadata": "plain"}, "Invalid hash", "metadata"),
        ("GET", "/v1/checkout/sessions/<id>", {"expand": "line_items"}, "Invalid array", "expand"),
        ("POST", "/v1/checkout/sessions", {"mode": "payment", "line_items[0][quantity][n]": "1"},
         "Invalid integer: line_items[0][quantity] must be an integer, not a hash.", "line_items[0][quantity]"),
    ]
    for method, rule, params, message, param in cases:
        assert_stripe_error(call(http, method, rule, params), 400, message, None, param)


def test_a_refused_request_changes_nothing_and_is_not_saved_for_replay(sdk, http):
    key = {**PINNED, "Idempotency-Key": "strict-1"}
    refused = call(http, "POST", "/v1/products", {"name": "p", "colour": "red"}, headers=key)
    assert refused.status_code == 400
    assert sdk.v1.products.list().data == []
    created = call(http, "POST", "/v1/products", {"name": "p"}, headers=key)
    assert created.status_code == 200 and "Idempotent-Replayed" not in created.headers


# --- expand -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,rule", ROUTES, ids=ROUTE_IDS)
def test_an_invalid_expand_is_refused_on_every_route(http, method, rule):
    route = strict.route_for(method, rule)
    missing = "data.no_such_field" if route.is_list else "no_such_field"
    assert_stripe_error(call(http, method, rule, {"expand[0]": missing}), 400,
                        f"This property cannot be expanded ({missing}).")
    scalar = "data.object" if route.is_list else "object"  # a string field: never expandable
    assert_stripe_error(call(http, method, rule, {"expand[0]": scalar}), 400,
                        f"This property cannot be expanded ({scalar}).")


def test_expand_paths_must_exist_all_the_way_and_lists_expand_through_data(http):
    for rule, path, failing in [
        ("/v1/checkout/sessions/<id>", "payment_intent.no_such_field", "payment_intent.no_such_field"),
        ("/v1/checkout/sessions/<id>", "customer_email", "customer_email"),
        ("/v1/checkout/sessions/<id>", "customer_details.email", "customer_details.email"),
        ("/v1/checkout/sessions", "payment_intent", "payment_intent"),  # a list: data.payment_intent
        ("/v1/checkout/sessions/<id>/line_items", "data.price", "data.price"),  # always an object
    ]:
        assert_stripe_error(call(http, "GET", rule, {"expand[0]": path}), 400,
                            f"This property cannot be expanded ({failing}).")
    assert_stripe_error(call(http, "GET", "/v1/charges/<id>", {"expand[0]": "a.b.c.d.e"}), 400,
                        "You cannot expand more than 4 levels of a property.")


def test_valid_expansions_are_accepted(sdk):
    cs = sdk.v1.checkout.sessions.create(params={"mode": "payment", "line_items": [
        {"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 700, "product_data": {"name": "x"}}}]})
    pay = sdk.http.test_client.post(f"/_sandbox/checkout/{cs.id}/pay", json={"card": "4242424242424242"})
    assert pay.status_code == 200
    got = sdk.v1.checkout.sessions.retrieve(cs.id, params={"expand": [
        "line_items", "payment_intent.latest_charge", "line_items.data.price.product", "customer"]})
    assert got.payment_intent.latest_charge.object == "charge" and got.line_items.data[0].price.product.object == "product"
    listed = sdk.v1.checkout.sessions.list(params={"expand": ["data.payment_intent", "data.line_items"]})
    assert listed.data[0].payment_intent.id == got.payment_intent.id
    charge = sdk.v1.charges.retrieve(got.payment_intent.latest_charge.id, params={"expand": ["payment_intent"]})
    assert charge.payment_intent.id == got.payment_intent.id


# --- Checkout: modes, ui_mode, payment method types -------------------------------------------------

ONE_TIME = [{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 999, "product_data": {"name": "x"}}}]
RECURRING = [{"quantity": 1, "price_data": {"currency": "usd", "unit_amount": 999, "product_data": {"name": "x"},
                                            "recurring": {"interval": "month"}}}]


@pytest.mark.parametrize("mode,extra", [
    ("payment", {"subscription_data": {"metadata": {"a": "b"}}}),
    ("payment", {"payment_method_collection": "if_required"}),
    ("payment", {"setup_intent_data": {"description": "x"}}),
    ("subscription", {"payment_intent_data": {"metadata": {"a": "b"}}}),
    ("subscription", {"invoice_creation": {"enabled": True}}),
    ("subscription", {"customer_creation": "always"}),
])
def test_checkout_refuses_parameters_of_the_other_mode(sdk, mode, extra):
    (name,) = extra
    with pytest.raises(stripe.InvalidRequestError) as refused:
        sdk.v1.checkout.sessions.create(params={"mode": mode, "line_items": ONE_TIME if mode == "payment" else RECURRING,
                                                **extra})
    err = refused.value
    assert (err.http_status, err.param, err.user_message) == (400, name, f"You can not pass `{name}` in `{mode}` mode.")


def test_checkout_accepts_the_pinned_versions_parameters(sdk):
    for mode, items, extra in [("payment", ONE_TIME, {"invoice_creation": {"enabled": False}, "customer_creation": "always",
                                                      "payment_intent_data": {"description": "d"}}),
                               ("subscription", RECURRING, {"subscription_data": {"metadata": {"planId": "p"}},
                                                            "payment_method_collection": "always"})]:
        cs = sdk.v1.checkout.sessions.create(params={"mode": mode, "line_items": items, "ui_mode": "hosted_page",
                                                     "allowed_payment_method_types": ["card", "sepa_debit"], **extra})
        assert cs.ui_mode == "hosted_page" and cs.payment_method_types == ["card", "sepa_debit"]
    assert sdk.v1.checkout.sessions.create(params={"mode": "payment", "line_items": ONE_TIME}).ui_mode == "hosted_page"


def test_checkout_ui_modes_of_the_pinned_version(sdk):
    with pytest.raises(stripe.InvalidRequestError) as old:
        sdk.v1.checkout.sessions.create(params={"mode": "payment", "line_items": ONE_TIME, "ui_mode": "hosted"})
    assert old.value.param == "ui_mode"
    assert old.value.user_message == "Invalid ui_mode: must be one of elements, embedded_page, form, or hosted_page"
    with pytest.raises(stripe.InvalidRequestError) as embedded:
        sdk.v1.checkout.sessions.create(params={"mode": "payment", "line_items": ONE_TIME, "ui_mode": "embedded_page"})
    assert embedded.value.param == "ui_mode" and "only serves ui_mode=hosted_page" in embedded.value.user_message


def test_payment_method_types_is_gone_in_the_pinned_version_but_older_clients_may_send_it(sdk, http):
    with pytest.raises(stripe.InvalidRequestError) as pi:
        sdk.v1.payment_intents.create(params={"amount": 900, "currency": "usd", "payment_method_types": ["card"]})
    assert (pi.value.http_status, pi.value.code, pi.value.param) == (
        400, "payment_method_types_no_longer_supported", "payment_method_types")
    with pytest.raises(stripe.InvalidRequestError) as cs:
        sdk.v1.checkout.sessions.create(params={"mode": "payment", "line_items": ONE_TIME,
                                                "payment_method_types": ["card"]})
    assert (cs.value.code, cs.value.param) == ("parameter_unknown", "payment_method_types")
    # The Stripe CLI (1.52) names no Stripe-Version and still sends payment_method_types[]: as it sends them.
    older = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    made = http.post("/v1/payment_intents", headers=older, data="confirm=true&description=%28created+by+Stripe+CLI%29"
                     "&amount=100&currency=usd&payment_method_types[]=card&payment_method=pm_card_visa")
    assert made.status_code == 200 and made.get_json()["status"] == "succeeded"
    price = sdk.v1.prices.create(params={"currency": "eur", "unit_amount": 1500, "product_data": {"name": "myproduct"}})
    session = http.post("/v1/checkout/sessions", headers=older, data=urlencode([
        ("success_url", "https://httpbin.org/post"), ("cancel_url", "https://httpbin.org/post"),
        ("payment_method_types[]", "sepa_debit"), ("mode", "payment"), ("line_items[0][price]", price.id),
        ("line_items[0][quantity]", "2"), ("payment_intent_data[setup_future_usage]", "off_session"),
        ("payment_intent_data[shipping][name]", "Jenny Rosen"),
        ("payment_intent_data[shipping][address][line1]", "510 Townsend St")]))
    assert session.status_code == 200 and session.get_json()["payment_method_types"] == ["sepa_debit"]
    cs_id = session.get_json()["id"]
    assert http.get(f"/v1/payment_pages/{cs_id}", headers=older).status_code == 200
    pm = http.post("/v1/payment_methods", headers=older, data=urlencode([
        ("type", "sepa_debit"), ("sepa_debit[iban]", "AT611904300234573201"), ("billing_details[email]", "s@example.com"),
        ("billing_details[address][country]", "GB")])).get_json()
    confirmed = http.post(f"/v1/payment_pages/{cs_id}/confirm", headers=older,
                          data=urlencode({"payment_method": pm["id"], "expected_amount": "3000"}))
    assert confirmed.status_code == 200 and confirmed.get_json()["status"] == "complete"


# --- what tokenbank sends -------------------------------------------------------------------------------

def test_tokenbank_sessions_adapter_calls_and_reconciliation_lists_are_accepted(sdk):
    deps = replace(make_deps(clock=time.time), stripe=sdk)
    package = start_checkout(deps, "u1", "pro")
    plan = start_plan_checkout(deps, "u1", "monthly")
    payments = StripePayments(sdk)
    for started in (package, plan):
        assert payments.checkout_session(started.session_id)["id"] == started.session_id
        pay = sdk.http.test_client.post(f"/_sandbox/checkout/{started.session_id}/pay", json={"card": "4242424242424242"})
        assert pay.status_code == 200
    paid = payments.checkout_session(package.session_id)
    assert payments.payment_intent(paid["payment_intent"])["status"] == "succeeded"
    assert payments.receipt_url(paid["payment_intent"]).startswith(f"{inprocess.BASE}/receipts/payment/")
    assert payments.receipt_url("pi_unknown") is None
    plan_session = payments.checkout_session(plan.session_id)
    customer = payments.subscription(plan_session["subscription"])["customer"]
    assert customer == plan_session["customer"] and payments.subscription("sub_unknown") is None
    assert payments.billing_portal_session(customer, "https://tokenbank.test/buy-tokens").startswith(
        f"{inprocess.BASE}/p/session/test_")
    assert payments.payment_intent("pi_unknown") is None
    assert payments.invoice_for_payment_intent(paid["payment_intent"]) is None
    assert payments.payment_intent_of_invoice("in_unknown") is None
    assert payments.invoice("in_unknown") is None
    if ("DELETE", "/v1/subscriptions/<obj_id>") in {(m, re.sub(r"<[^>]+>", "<obj_id>", r)) for m, r in ROUTES}:
        subscription = payments.checkout_session(plan.session_id)["subscription"]
        assert payments.cancel_subscription(subscription, at_period_end=True)["cancel_at_period_end"] is True
        assert payments.cancel_subscription(subscription, at_period_end=False)["status"] == "canceled"
    class Queue:  # whatever reconciliation asks for (no worker here)
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    report = reconcile(deps, Queue(), max_rps=1000)
    assert report.counts["sessions_seen"] == 2
    posts = [r for r in sdk.http.requests if r["method"] == "POST" and r["path"] == "/v1/checkout/sessions"]
    assert len(posts) == 2 and all(r["headers"]["Stripe-Version"] == STRIPE_API_VERSION for r in sdk.http.requests)
    listed = {r["path"] for r in sdk.http.requests if r["method"] == "GET"}
    assert {"/v1/checkout/sessions", "/v1/invoices", "/v1/charges", "/v1/disputes", "/v1/invoice_payments"} <= listed


# --- objects: that version's fields, no invented ones, nothing private ------------------------------------

def test_every_rendered_object_has_only_fields_the_sdk_declares(sdk):
    tc = sdk.http.test_client
    seen: list[dict] = []

    def get(path, **params):
        resp = call(tc, "GET", path, params)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        seen.append(resp.get_json())
        return resp.get_json()

    def post(path, params):
        resp = call(tc, "POST", path, params)
        seen.append(resp.get_json())
        return resp.get_json()

    product = post("/v1/products", {"name": "p", "description": "d"})
    price = post("/v1/prices", {"product": product["id"], "unit_amount": "500", "currency": "usd"})
    recurring = post("/v1/prices", {"product": product["id"], "unit_amount": "900", "currency": "usd",
                                    "recurring[interval]": "month"})
    customer = post("/v1/customers", {"email": "a@example.com", "name": "A"})
    sessions = []
    for mode, price_id, extra in [("payment", price["id"], {"customer": customer["id"]}),
                                  ("subscription", recurring["id"], {}), ("payment", price["id"], {}),
                                  ("payment", price["id"], {})]:
        sessions.append(post("/v1/checkout/sessions", {"mode": mode, "line_items[0][price]": price_id,
                                                       "line_items[0][quantity]": "1", "expand[0]": "line_items",
                                                       "success_url": "https://tokenbank.test/ok", **extra}))
    card, sub, delayed, declined = (s["id"] for s in sessions)
    assert tc.post(f"/_sandbox/checkout/{card}/pay", json={"card": "4242424242424242"}).status_code == 200
    assert tc.post(f"/_sandbox/checkout/{sub}/pay", json={"card": "4242424242424242"}).status_code == 200
    assert tc.post(f"/_sandbox/checkout/{delayed}/pay", json={"method": "delayed"}).status_code == 200
    assert tc.post(f"/_sandbox/checkout/{delayed}/async_result", json={"succeeded": False}).status_code == 200
    assert tc.post(f"/_sandbox/checkout/{declined}/pay", json={"card": "4000000000000002"}).status_code == 402
    post(f"/v1/checkout/sessions/{declined}/expire", {})
    get(f"/v1/checkout/sessions/{card}", **{"expand[0]": "payment_intent.latest_charge", "expand[1]": "line_items",
                                            "expand[2]": "customer"})
    get(f"/v1/checkout/sessions/{sub}", **{"expand[0]": "subscription"})
    pi = post("/v1/payment_intents", {"amount": "1000", "currency": "usd", "payment_method": "pm_card_visa",
                                      "confirm": "true", "metadata[k]": "v"})
    post("/v1/refunds", {"payment_intent": pi["id"], "amount": "100", "reason": "requested_by_customer"})
    disputed = post("/v1/payment_intents", {"amount": "1000", "currency": "usd",
                                            "payment_method": "pm_card_createDispute", "confirm": "true"})
    dispute = get("/v1/disputes", payment_intent=disputed["id"])["data"][0]
    post(f"/v1/disputes/{dispute['id']}", {"metadata[a]": "b", "evidence[product_description]": "tokens"})
    post(f"/v1/disputes/{dispute['id']}/close", {})
    for pm in ({"type": "card", "card[token]": "tok_visa", "billing_details[email]": "e@example.com"},
               {"type": "sepa_debit", "sepa_debit[iban]": "DE89370400440532013000"},
               {"type": "bacs_debit", "bacs_debit[account_number]": "00012345", "bacs_debit[sort_code]": "108800"}):
        post("/v1/payment_methods", pm)
    get("/v1/payment_methods/pm_card_visa")
    post("/v1/payment_intents", {"amount": "1000", "currency": "usd", "payment_method": "pm_card_chargeDeclined",
                                 "confirm": "true"})  # a card_error carrying the PaymentIntent and PaymentMethod
    subscribed = get(f"/v1/checkout/sessions/{sub}")
    post("/v1/billing_portal/sessions", {"customer": subscribed["customer"], "return_url": "https://tokenbank.test/",
                                         "expand[0]": "configuration"})
    pending = post("/v1/payment_intents", {"amount": "700", "currency": "usd"})
    post(f"/v1/payment_intents/{pending['id']}", {"description": "updated", "metadata[x]": "y"})
    post(f"/v1/payment_intents/{pending['id']}/cancel", {})
    for path in ("/v1/products", "/v1/prices", "/v1/customers", "/v1/checkout/sessions", "/v1/payment_intents",
                 "/v1/charges", "/v1/refunds", "/v1/disputes", f"/v1/checkout/sessions/{card}/line_items",
                 "/v1/invoices", "/v1/invoice_payments"):
        get(path, limit="100")
    events = sdk.v1.events.list(params={"limit": 100})
    for event in events.auto_paging_iter():
        seen.append(get(f"/v1/events/{event.id}"))

    problems = sorted({re.sub(r"\[\d+\]", "[]", p) for obj in seen for p in strict.undeclared_fields(obj)})
    assert problems == [], f"fields the SDK's classes for {stripe.api_version} do not declare: {problems}"

    kinds = set()

    def collect(obj):
        if isinstance(obj, dict):
            if isinstance(obj.get("object"), str):
                kinds.add(obj["object"])
            for value in obj.values():
                collect(value)
        elif isinstance(obj, list):
            for value in obj:
                collect(value)
    collect(seen)
    assert {"checkout.session", "payment_intent", "charge", "refund", "dispute", "customer", "price", "product",
            "event", "list", "item", "payment_method", "subscription", "billing_portal.session",
            "billing_portal.configuration"} <= kinds


def test_the_object_check_finds_invented_and_private_fields():
    assert strict.undeclared_fields({"object": "charge", "id": "ch_1", "amount": 1, "colour": "red"}) == ["colour"]
    assert strict.undeclared_fields({"object": "refund", "id": "re_1", "_seq": 3}) == ["_seq (private)"]
    assert strict.undeclared_fields({"object": "checkout.session", "customer_details": {"email": "e", "shoe": 9}}) == [
        "customer_details.shoe"]
    event = {"object": "event", "data": {"object": {"object": "charge", "bogus": 1}}}
    assert strict.undeclared_fields(event) == ["data.object.bogus"]
