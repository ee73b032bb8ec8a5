"""Flask routes under /v1: authentication, idempotency, Stripe-shaped JSON.

Every API request runs under the store's lock, so a request (and the events it
emits) is atomic with respect to every other request and the expirer.
"""

from __future__ import annotations

import base64
import functools
import json
import sys
import traceback
from urllib.parse import parse_qsl

from flask import Blueprint, Response, current_app, request

from . import catalog, checkout, objects, payments, strict
from .errors import StripeError, invalid_param
from .events import Sandbox, current_request, emit, matches_type
from .forms import get_bool, get_int, get_list, get_metadata, get_str, parse_pairs
from .store import PREFIX_TYPES, IdempotencyRecord, created_filter, list_envelope, new_id, paginate, public

bp = Blueprint("v1", __name__, url_prefix="/v1")

# Only successful (and card-declined) results are saved for replay, as at Stripe,
# where a request that failed validation saves nothing.
REPLAYABLE = lambda status: 200 <= status < 300 or status == 402  # noqa: E731


def sb() -> Sandbox:
    return current_app.config["SANDBOX"]


def dumps(obj) -> bytes:
    return json.dumps(obj, indent=2).encode("utf-8")


# --- auth ------------------------------------------------------------------------

def _redact(key: str) -> str:
    return key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else key[:3] + "****"


def api_key_or_error() -> str:
    header = request.headers.get("Authorization", "")
    key = ""
    if header.startswith("Bearer "):
        key = header[7:].strip()
    elif header.startswith("Basic "):
        try:
            key = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        except Exception:
            key = ""
    if not key:
        raise StripeError(401, "You did not provide an API key. You need to provide your API key in the Authorization "
                          "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
                          "https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.")
    if key.startswith(("sk_live_", "rk_live_", "pk_live_")):
        raise StripeError(401, "This is the local Stripe sandbox: it never accepts live keys "
                          f"(got {_redact(key)}). Use a test key (sk_test_...).")
    if not key.startswith(("sk_test_", "rk_test_")) or len(key) < 12:
        raise StripeError(401, f"Invalid API Key provided: {_redact(key)}")
    return key


# --- request wrapper -------------------------------------------------------------

def _json_response(status: int, body: bytes, request_id: str, extra: dict | None = None) -> Response:
    resp = Response(body, status=status, mimetype="application/json")
    resp.headers["Request-Id"] = request_id
    resp.headers["Stripe-Version"] = request.headers.get("Stripe-Version") or sb().config.api_version
    resp.headers["Access-Control-Allow-Origin"] = "*"
    for k, v in (extra or {}).items():
        resp.headers[k] = v
    return resp


def _params() -> dict:
    pairs = parse_qsl(request.query_string.decode("utf-8", errors="replace"), keep_blank_values=True)
    if request.method == "POST":
        pairs += parse_qsl(request.get_data(as_text=True), keep_blank_values=True)
    return parse_pairs(pairs)


def _fingerprint() -> tuple:
    body = sorted(parse_qsl(request.get_data(as_text=True), keep_blank_values=True))
    return (request.method, request.path, tuple(body))


@bp.record_once
def _read_the_sdks_types(state) -> None:
    strict.warm()  # when the app is made, so that no request waits for it


def api_route(rule: str, methods=("GET",)):
    """Registers a /v1 route. Each request is authenticated, checked against the route's entry
    in sandbox/strict.py ROUTES (unknown parameters, value kinds, expand paths), run under the
    store's lock, and answered as Stripe would (errors in its shape, idempotent replays)."""
    full_rule = (bp.url_prefix or "") + rule

    def decorator(fn):
        @functools.wraps(fn)
        def view(**kwargs):
            s = sb()
            request_id = new_id("request")
            try:
                key = api_key_or_error()
            except StripeError as e:
                return _json_response(e.status, dumps(e.body(request_id)), request_id)
            idem_key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
            with s.store.lock:
                record = None
                if idem_key:
                    scope = (key, idem_key)
                    record = s.store.idempotency.get(scope)
                    if record is not None:
                        if record.fingerprint != _fingerprint():
                            err = StripeError(400, "Keys for idempotent requests can only be used with the same parameters "
                                              "they were first used with. Try using a key other than "
                                              f"'{idem_key}' if you meant to execute a different request.",
                                              type="idempotency_error")
                            return _json_response(400, dumps(err.body(request_id)), request_id)
                        return _json_response(record.status, record.body, record.request_id,
                                              {"Idempotent-Replayed": "true", "Original-Request": record.request_id,
                                               "Idempotency-Key": idem_key})
                token = current_request.set((request_id, idem_key))
                try:
                    params = _params()
                    strict.check_request(request.method, full_rule, params,  # what Stripe would refuse
                                         request.headers.get("Stripe-Version"))
                    result = fn(s, params, **kwargs)
                    status, body = 200, dumps(result)
                except StripeError as e:
                    status, body = e.status, dumps(e.body(request_id))
                except Exception as e:  # a sandbox bug: answer like Stripe's api_error, keep serving
                    traceback.print_exc(file=sys.stderr)
                    err = StripeError(500, f"Sandbox internal error: {type(e).__name__}: {e}", type="api_error")
                    status, body = 500, dumps(err.body(request_id))
                finally:
                    current_request.reset(token)
                extra = {}
                if idem_key:
                    extra["Idempotency-Key"] = idem_key
                    if REPLAYABLE(status):
                        s.store.idempotency[(key, idem_key)] = IdempotencyRecord(
                            method=request.method, path=request.path, fingerprint=_fingerprint(), in_progress=False,
                            status=status, body=body, request_id=request_id)
                return _json_response(status, body, request_id, extra)
        bp.add_url_rule(rule, endpoint=fn.__name__, view_func=view, methods=list(methods))
        return fn
    return decorator


# --- rendering and expansion -----------------------------------------------------

def _expand_value(s: Sandbox, stored: dict, rendered: dict, path: list[str], full: str) -> None:
    head, rest = path[0], path[1:]
    if stored.get("object") == "checkout.session" and head == "line_items":
        items = checkout.line_items_list(stored)
        data = [public(li) for li in items]
        if rest and rest[0] == "data":  # line_items.data.price.product, as Stripe spells it
            rest = rest[1:]
        if rest:
            for li_stored, li in zip(items, data):
                _expand_value(s, li_stored, li, rest, full)
        rendered["line_items"] = list_envelope(data, False, f"/v1/checkout/sessions/{stored['id']}/line_items")
        return
    if head not in rendered:
        raise invalid_param("expand", f"This property cannot be expanded ({full}).")
    value = stored.get(head) if head in stored else rendered.get(head)
    if isinstance(value, dict):  # already an object (e.g. line item price): expand inside it
        if rest:
            _expand_value(s, value, rendered[head], rest, full)
        return
    if value is None:
        return
    if not isinstance(value, str) or not any(value.startswith(p) for p in PREFIX_TYPES):
        raise invalid_param("expand", f"This property cannot be expanded ({full}).")
    target = s.store.get(value)
    if target is None:
        return
    rendered[head] = public(target)
    if rest:
        _expand_value(s, target, rendered[head], rest, full)


def render(s: Sandbox, stored: dict, params: dict, in_list: bool = False) -> dict:
    out = public(stored)
    for path in get_list(params, "expand"):
        path = str(path)
        if in_list:
            if not path.startswith("data."):
                continue
            path = path[len("data."):]
        _expand_value(s, stored, out, path.split("."), path)
    return out


def list_response(s: Sandbox, items: list[dict], params: dict, url: str) -> dict:
    page, has_more = paginate(items, params, url)
    return list_envelope([render(s, o, params, in_list=True) for o in page], has_more, url)


def _created(params: dict):
    return created_filter(params.get("created"))


# --- products, prices, customers ---------------------------------------------------

@api_route("/products", methods=("POST",))
def create_product(s, params):
    return render(s, catalog.create_product(s, params), params)


@api_route("/products/<obj_id>")
def get_product(s, params, obj_id):
    return render(s, s.store.require(obj_id, "product"), params)


@api_route("/products")
def list_products(s, params):
    active = get_bool(params, "active")
    pred = _created(params)
    items = [p for p in s.store.newest_first("product") if pred(p["created"]) and (active is None or p["active"] == active)]
    return list_response(s, items, params, "/v1/products")


@api_route("/prices", methods=("POST",))
def create_price(s, params):
    return render(s, catalog.price_from_params(s, params), params)


@api_route("/prices/<obj_id>")
def get_price(s, params, obj_id):
    return render(s, s.store.require(obj_id, "price"), params)


@api_route("/prices")
def list_prices(s, params):
    product = get_str(params, "product")
    active = get_bool(params, "active")
    ptype = get_str(params, "type")
    pred = _created(params)
    items = [p for p in s.store.newest_first("price") if pred(p["created"])
             and (product is None or p["product"] == product) and (active is None or p["active"] == active)
             and (ptype is None or p["type"] == ptype)]
    return list_response(s, items, params, "/v1/prices")


@api_route("/customers", methods=("POST",))
def create_customer(s, params):
    return render(s, catalog.create_customer(s, params), params)


@api_route("/customers/<obj_id>")
def get_customer(s, params, obj_id):
    return render(s, s.store.require(obj_id, "customer"), params)


@api_route("/customers")
def list_customers(s, params):
    email = get_str(params, "email")
    pred = _created(params)
    items = [c for c in s.store.newest_first("customer") if pred(c["created"]) and (email is None or c["email"] == email)]
    return list_response(s, items, params, "/v1/customers")


# --- checkout sessions ---------------------------------------------------------------

@api_route("/checkout/sessions", methods=("POST",))
def create_checkout_session(s, params):
    return render(s, checkout.create_session(s, params), params)


@api_route("/checkout/sessions/<obj_id>")
def get_checkout_session(s, params, obj_id):
    return render(s, s.store.require(obj_id, "checkout.session", "checkout.session"), params)


@api_route("/checkout/sessions/<obj_id>/line_items")
def list_checkout_line_items(s, params, obj_id):
    cs = s.store.require(obj_id, "checkout.session", "checkout.session")
    return list_response(s, checkout.line_items_list(cs), params, f"/v1/checkout/sessions/{obj_id}/line_items")


@api_route("/checkout/sessions")
def list_checkout_sessions(s, params):
    status = get_str(params, "status")
    if status and status not in ("open", "complete", "expired"):
        raise invalid_param("status", "Invalid status: must be one of open, complete, or expired")
    payment_status = get_str(params, "payment_status")
    payment_intent = get_str(params, "payment_intent")
    customer = get_str(params, "customer")
    email = get_str(params.get("customer_details") or {}, "email") if isinstance(params.get("customer_details"), dict) else None
    pred = _created(params)
    items = [c for c in s.store.newest_first("checkout.session") if pred(c["created"])
             and (status is None or c["status"] == status)
             and (payment_status is None or c["payment_status"] == payment_status)
             and (payment_intent is None or c["payment_intent"] == payment_intent)
             and (customer is None or c["customer"] == customer)
             and (email is None or (c["customer_details"] or {}).get("email") == email)]
    return list_response(s, items, params, "/v1/checkout/sessions")


@api_route("/checkout/sessions/<obj_id>/expire", methods=("POST",))
def expire_checkout_session(s, params, obj_id):
    cs = s.store.require(obj_id, "checkout.session", "checkout.session")
    return render(s, payments.expire_session(s, cs), params)


# The private API the CLI's checkout triggers use (what Stripe's hosted page calls).
@api_route("/payment_pages/<obj_id>")
def get_payment_page(s, params, obj_id):
    cs = s.store.require(obj_id, "checkout.session", "checkout.session")
    out = render(s, cs, params)
    out["object"] = "checkout.session"
    out["session_id"] = cs["id"]
    return out


@api_route("/payment_pages/<obj_id>/confirm", methods=("POST",))
def confirm_payment_page(s, params, obj_id):
    cs = s.store.require(obj_id, "checkout.session", "checkout.session")
    payments.check_session_open(cs)
    expected = params.get("expected_amount")
    if expected not in (None, "") and str(expected) != str(cs["amount_total"]):
        raise invalid_param("expected_amount", f"The expected amount ({expected}) does not match the session's "
                            f"amount_total ({cs['amount_total']}).")
    pm = payments.resolve_payment_method(s, get_str(params, "payment_method", required=True))
    if pm["type"] not in cs["payment_method_types"] and not (pm["type"] == "card" and "card" in cs["payment_method_types"]):
        raise invalid_param("payment_method", f"This Checkout Session does not accept {pm['type']} "
                            f"(payment_method_types: {', '.join(cs['payment_method_types'])}).")
    email = get_str(params, "email") or pm["billing_details"].get("email")
    payments.pay_session(s, cs, pm, email)
    return render(s, cs, params)


# --- payment methods, payment intents, charges, refunds, disputes -----------------------

@api_route("/payment_methods", methods=("POST",))
def create_payment_method(s, params):
    return render(s, payments.create_payment_method(s, params), params)


@api_route("/payment_methods/<obj_id>")
def get_payment_method(s, params, obj_id):
    return render(s, payments.resolve_payment_method(s, obj_id, param="id"), params)


@api_route("/payment_intents", methods=("POST",))
def create_payment_intent(s, params):
    amount = get_int(params, "amount", required=True, minimum=1)
    currency = catalog.check_currency(get_str(params, "currency", required=True), "currency")
    minimum = checkout.MINIMUM_AMOUNTS.get(currency)
    if minimum and amount < minimum:
        raise invalid_param("amount", f"Amount must be at least {objects.format_amount(minimum, currency)}",
                            code="amount_too_small")
    if get_str(params, "capture_method") == "manual":
        raise invalid_param("capture_method", "The sandbox does not support manual capture.")
    customer = get_str(params, "customer")
    if customer and s.store.get(customer, "customer") is None:
        raise StripeError(400, f"No such customer: '{customer}'", code="resource_missing", param="customer")
    pm_ref = get_str(params, "payment_method")
    if pm_ref:
        payments.resolve_payment_method(s, pm_ref)  # validates early, like Stripe
    pi = payments.new_payment_intent(
        s, amount, currency, metadata=get_metadata(params), description=get_str(params, "description"),
        customer_id=customer, payment_method_types=[str(t) for t in get_list(params, "payment_method_types")] or ["card"],
        receipt_email=get_str(params, "receipt_email"), shipping=params.get("shipping") or None,
        setup_future_usage=get_str(params, "setup_future_usage"))
    if pm_ref:
        pi["payment_method"] = payments.resolve_payment_method(s, pm_ref)["id"]
        pi["status"] = "requires_confirmation"
    if get_bool(params, "confirm", False):
        payments.confirm_payment_intent(s, pi, None)
    return render(s, pi, params)


@api_route("/payment_intents/<obj_id>")
def get_payment_intent(s, params, obj_id):
    return render(s, s.store.require(obj_id, "payment_intent"), params)


@api_route("/payment_intents/<obj_id>", methods=("POST",))
def update_payment_intent(s, params, obj_id):
    pi = s.store.require(obj_id, "payment_intent")
    if "metadata" in params:
        meta = dict(pi["metadata"])
        for k, v in (params["metadata"] or {}).items() if isinstance(params["metadata"], dict) else []:
            if v == "":
                meta.pop(k, None)
            else:
                meta[k] = v
        pi["metadata"] = meta
    if "description" in params:
        pi["description"] = get_str(params, "description")
    return render(s, pi, params)


@api_route("/payment_intents/<obj_id>/confirm", methods=("POST",))
def confirm_payment_intent(s, params, obj_id):
    pi = s.store.require(obj_id, "payment_intent")
    return render(s, payments.confirm_payment_intent(s, pi, get_str(params, "payment_method")), params)


@api_route("/payment_intents/<obj_id>/cancel", methods=("POST",))
def cancel_payment_intent(s, params, obj_id):
    pi = s.store.require(obj_id, "payment_intent")
    return render(s, payments.cancel_payment_intent(s, pi, get_str(params, "cancellation_reason")), params)


@api_route("/payment_intents")
def list_payment_intents(s, params):
    customer = get_str(params, "customer")
    pred = _created(params)
    items = [p for p in s.store.newest_first("payment_intent") if pred(p["created"]) and (customer is None or p["customer"] == customer)]
    return list_response(s, items, params, "/v1/payment_intents")


@api_route("/charges/<obj_id>")
def get_charge(s, params, obj_id):
    return render(s, s.store.require(obj_id, "charge"), params)


@api_route("/charges")
def list_charges(s, params):
    pi = get_str(params, "payment_intent")
    customer = get_str(params, "customer")
    pred = _created(params)
    items = [c for c in s.store.newest_first("charge") if pred(c["created"])
             and (pi is None or c["payment_intent"] == pi) and (customer is None or c["customer"] == customer)]
    return list_response(s, items, params, "/v1/charges")


@api_route("/refunds", methods=("POST",))
def create_refund(s, params):
    return render(s, payments.create_refund(s, params), params)


@api_route("/refunds/<obj_id>")
def get_refund(s, params, obj_id):
    return render(s, s.store.require(obj_id, "refund"), params)


@api_route("/refunds")
def list_refunds(s, params):
    charge = get_str(params, "charge")
    pi = get_str(params, "payment_intent")
    pred = _created(params)
    items = [r for r in s.store.newest_first("refund") if pred(r["created"])
             and (charge is None or r["charge"] == charge) and (pi is None or r["payment_intent"] == pi)]
    return list_response(s, items, params, "/v1/refunds")


@api_route("/disputes/<obj_id>")
def get_dispute(s, params, obj_id):
    return render(s, s.store.require(obj_id, "dispute"), params)


@api_route("/disputes/<obj_id>", methods=("POST",))
def update_dispute(s, params, obj_id):
    dp = s.store.require(obj_id, "dispute")
    if "metadata" in params:
        dp["metadata"] = {**dp["metadata"], **get_metadata(params)}
    if isinstance(params.get("evidence"), dict):
        dp["evidence"].update({k: v for k, v in params["evidence"].items() if k in dp["evidence"]})
        dp["evidence_details"]["has_evidence"] = True
    emit(s, "charge.dispute.updated", dp)
    return render(s, dp, params)


@api_route("/disputes/<obj_id>/close", methods=("POST",))
def close_dispute(s, params, obj_id):
    return render(s, payments.close_dispute(s, s.store.require(obj_id, "dispute")), params)


@api_route("/disputes")
def list_disputes(s, params):
    charge = get_str(params, "charge")
    pi = get_str(params, "payment_intent")
    pred = _created(params)
    items = [d for d in s.store.newest_first("dispute") if pred(d["created"])
             and (charge is None or d["charge"] == charge) and (pi is None or d["payment_intent"] == pi)]
    return list_response(s, items, params, "/v1/disputes")


# --- events --------------------------------------------------------------------------

@api_route("/events/<obj_id>")
def get_event(s, params, obj_id):
    return render(s, s.store.require(obj_id, "event"), params)


@api_route("/events")
def list_events(s, params):
    etype = get_str(params, "type")
    types = [str(t) for t in get_list(params, "types")]
    if etype and types:
        raise StripeError(400, "You may only specify one of these parameters: type, types.", param="type")
    success = get_bool(params, "delivery_success")
    pred = _created(params)

    def wanted(ev):
        if not pred(ev["created"]):
            return False
        if etype and not matches_type(ev["type"], etype):
            return False
        if types and ev["type"] not in types:
            return False
        if success is not None and (ev["pending_webhooks"] == 0) != success:
            return False
        return True
    return list_response(s, [e for e in s.store.newest_first("event") if wanted(e)], params, "/v1/events")


# --- fallbacks -------------------------------------------------------------------------

@bp.route("/<path:rest>", methods=["GET", "POST", "DELETE", "PUT", "PATCH"])
def unknown_route(rest):
    return unrecognized()


def unrecognized() -> Response:
    s = sb()
    request_id = new_id("request")
    line = f"{request.method} {request.full_path.rstrip('?')}"
    print(f"[sandbox] UNKNOWN ROUTE {line} body={request.get_data(as_text=True)[:500]!r}", file=sys.stderr, flush=True)
    with s.store.lock:
        s.store.unknown_requests.append({"method": request.method, "path": request.full_path.rstrip("?"),
                                         "body": request.get_data(as_text=True)[:2000]})
    err = StripeError(404, f"Unrecognized request URL ({request.method}: {request.path}). Please see "
                      "https://stripe.com/docs or we can help at https://support.stripe.com/.")
    return _json_response(404, dumps(err.body()), request_id)
