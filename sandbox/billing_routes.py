"""The /v1 billing routes: payment methods of customers, customer updates, subscriptions,
invoice items, invoices and invoice payments (registered on sandbox.api's blueprint with
its `api_route`, so authentication, idempotency and errors are the same as everywhere).
"""

from __future__ import annotations

from . import billing_customers, billing_objects, invoices, payments, subscriptions
from .api import api_route, list_response
from .billing_render import render, respond_list
from .catalog import check_currency
from .errors import StripeError, invalid_param
from .events import emit
from .forms import get_bool, get_dict, get_int, get_metadata, get_str
from .store import created_filter

INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")
SUBSCRIPTION_STATUSES = ("active", "all", "canceled", "ended", "incomplete", "incomplete_expired", "past_due",
                         "paused", "trialing", "unpaid")


def _require(s, obj_id: str, kind: str) -> dict:
    return s.store.require(obj_id, kind)


# --- payment methods and customers ------------------------------------------------------------

@api_route("/payment_methods/<obj_id>/attach", methods=("POST",))
def attach_payment_method(s, params, obj_id):
    pm, events = billing_customers.attach(s, obj_id, get_str(params, "customer"))
    payments.emit_all(s, events)
    return render(s, pm, params)


@api_route("/payment_methods/<obj_id>/detach", methods=("POST",))
def detach_payment_method(s, params, obj_id):
    pm = payments.resolve_payment_method(s, obj_id, param="id")
    return render(s, billing_customers.detach(s, pm), params)


@api_route("/customers/<obj_id>", methods=("POST",))
def update_customer(s, params, obj_id):
    return render(s, billing_customers.update(s, _require(s, obj_id, "customer"), params), params)


# --- subscriptions ------------------------------------------------------------------------------

@api_route("/subscriptions", methods=("POST",))
def create_subscription(s, params):
    return render(s, subscriptions.create(s, params), params)


@api_route("/subscriptions/<obj_id>")
def retrieve_subscription(s, params, obj_id):
    return render(s, _require(s, obj_id, "subscription"), params)


@api_route("/subscriptions/<obj_id>", methods=("POST",))
def update_subscription(s, params, obj_id):
    return render(s, subscriptions.update(s, _require(s, obj_id, "subscription"), params), params)


@api_route("/subscriptions/<obj_id>", methods=("DELETE",))
def cancel_subscription(s, params, obj_id):
    return render(s, subscriptions.cancel(s, _require(s, obj_id, "subscription"), params), params)


@api_route("/subscriptions")
def list_subscriptions(s, params):
    status = get_str(params, "status")
    if status and status not in SUBSCRIPTION_STATUSES:
        raise invalid_param("status", f"Invalid status: must be one of {', '.join(SUBSCRIPTION_STATUSES)}")
    customer, price = get_str(params, "customer"), get_str(params, "price")
    pred = created_filter(params.get("created"))

    def wanted(sub):
        if status == "ended":
            ok = sub["status"] in ("canceled", "incomplete_expired")
        elif status in (None, "all"):
            ok = status == "all" or sub["status"] != "canceled"
        else:
            ok = sub["status"] == status
        return (ok and pred(sub["created"]) and customer in (None, sub["customer"])
                and (price is None or any(si["price"]["id"] == price for si in sub["items"]["data"])))
    return respond_list(s, [x for x in s.store.newest_first("subscription") if wanted(x)], params, "/v1/subscriptions")


# --- invoice items and invoices -------------------------------------------------------------------

@api_route("/invoiceitems", methods=("POST",))
def create_invoice_item(s, params):
    cus = billing_customers.require_customer(s, get_str(params, "customer"))
    price_id = get_str(params, "price") or get_str(get_dict(params, "pricing"), "price", param="pricing[price]")
    quantity = get_int(params, "quantity", minimum=1) or 1
    price = None
    if price_id:
        price = s.store.get(price_id, "price")
        if price is None:
            raise StripeError(400, f"No such price: '{price_id}'", code="resource_missing", param="price")
        amount, currency = price["unit_amount"] * quantity, price["currency"]
    else:
        amount = get_int(params, "amount", required=True)
        currency = check_currency(get_str(params, "currency", required=True), "currency")
    sub_id = get_str(params, "subscription")
    if sub_id and s.store.get(sub_id, "subscription") is None:
        raise StripeError(400, f"No such subscription: '{sub_id}'", code="resource_missing", param="subscription")
    target = get_str(params, "invoice")
    inv = s.store.get(target, "invoice") if target else None
    if target and (inv is None or inv["customer"] != cus["id"]):
        raise StripeError(400, f"No such invoice: '{target}'", code="resource_missing", param="invoice")
    ii = s.store.add(billing_objects.invoice_item(s.store.now(), cus["id"], amount, currency, get_str(params, "description"),
                                  get_metadata(params), quantity, price, sub_id))
    if inv is not None:
        invoices.add_items(inv, [ii])
    emit(s, "invoiceitem.created", ii)
    return render(s, ii, params)


@api_route("/invoices", methods=("POST",))
def create_invoice(s, params):
    cus = billing_customers.require_customer(s, get_str(params, "customer"))
    sub_id = get_str(params, "subscription")
    sub = s.store.get(sub_id, "subscription") if sub_id else None
    if sub_id and (sub is None or sub["customer"] != cus["id"]):
        raise StripeError(400, f"No such subscription: '{sub_id}'", code="resource_missing", param="subscription")
    behavior = get_str(params, "pending_invoice_items_behavior") or "exclude"
    if behavior not in ("exclude", "include"):
        raise invalid_param("pending_invoice_items_behavior", "Invalid pending_invoice_items_behavior: must be one "
                            "of exclude or include")
    pending = invoices.pending_items(s, cus["id"], sub_id) if behavior == "include" else []
    currency = get_str(params, "currency") or (pending[0]["currency"] if pending else None) or \
        (sub["currency"] if sub else "usd")
    now = s.store.now()
    inv = billing_objects.invoice(now, cus, currency=check_currency(currency, "currency"), billing_reason="manual",
                              period_start=now, period_end=now, subscription=sub,
                              description=get_str(params, "description"), metadata=get_metadata(params),
                              auto_advance=get_bool(params, "auto_advance", False))
    invoices.add_items(inv, pending)
    s.store.add(inv)
    emit(s, "invoice.created", inv)
    return render(s, inv, params)


@api_route("/invoices/<obj_id>")
def retrieve_invoice(s, params, obj_id):
    return render(s, _require(s, obj_id, "invoice"), params)


@api_route("/invoices/<obj_id>/lines")
def list_invoice_lines(s, params, obj_id):
    inv = _require(s, obj_id, "invoice")
    return list_response(s, list(inv["lines"]["data"]), params, f"/v1/invoices/{obj_id}/lines")


@api_route("/invoices/<obj_id>/finalize", methods=("POST",))
def finalize_invoice(s, params, obj_id):
    inv = _require(s, obj_id, "invoice")
    evs: list = []
    invoices.finalize(s, inv, evs)
    payments.emit_all(s, evs)
    return render(s, inv, params)


@api_route("/invoices/<obj_id>/pay", methods=("POST",))
def pay_invoice(s, params, obj_id):
    inv = _require(s, obj_id, "invoice")
    if get_bool(params, "paid_out_of_band", False):
        raise invalid_param("paid_out_of_band", "The sandbox does not support paid_out_of_band.")
    cus = s.store.get(inv["customer"], "customer")
    ref = get_str(params, "payment_method")
    if ref:
        pm = payments.resolve_payment_method(s, ref)
        if pm["customer"] not in (None, cus["id"]):
            pm = billing_customers.customer_pm(s, cus, ref, "payment_method")  # raises: another customer's
    else:
        sub = invoices.subscription_of(s, inv)
        pm = (s.store.get(sub["default_payment_method"], "payment_method") if sub else None) or \
            billing_customers.default_pm(s, cus)
        if pm is None:
            raise StripeError(400, subscriptions.NO_PAYMENT_METHOD, code="resource_missing")
    invoices.pay_now(s, inv, pm)
    return render(s, inv, params)


@api_route("/invoices")
def list_invoices(s, params):
    status = get_str(params, "status")
    if status and status not in INVOICE_STATUSES:
        raise invalid_param("status", f"Invalid status: must be one of {', '.join(INVOICE_STATUSES)}")
    customer, sub = get_str(params, "customer"), get_str(params, "subscription")
    method = get_str(params, "collection_method")
    pred = created_filter(params.get("created"))
    items = [inv for inv in s.store.newest_first("invoice") if pred(inv["created"])
             and status in (None, inv["status"]) and customer in (None, inv["customer"])
             and method in (None, inv["collection_method"])
             and (sub is None or (invoices.subscription_of(s, inv) or {}).get("id") == sub)]
    return respond_list(s, items, params, "/v1/invoices")


# --- invoice payments ------------------------------------------------------------------------

@api_route("/invoice_payments/<obj_id>")
def retrieve_invoice_payment(s, params, obj_id):
    return render(s, _require(s, obj_id, "invoice_payment"), params)


@api_route("/invoice_payments")
def list_invoice_payments(s, params):
    invoice, status = get_str(params, "invoice"), get_str(params, "status")
    payment = get_dict(params, "payment")
    ptype = get_str(payment, "type", param="payment[type]")
    pi = get_str(payment, "payment_intent", param="payment[payment_intent]")
    if payment and ptype is None:
        raise StripeError(400, "Missing required param: payment[type].", code="parameter_missing", param="payment[type]")
    if ptype not in (None, "payment_intent", "payment_record"):
        raise invalid_param("payment[type]", "Invalid payment[type]: must be one of payment_intent or payment_record")
    pred = created_filter(params.get("created"))
    items = [ip for ip in s.store.newest_first("invoice_payment") if pred(ip["created"])
             and invoice in (None, ip["invoice"]) and status in (None, ip["status"])
             and ptype in (None, ip["payment"]["type"]) and pi in (None, ip["payment"].get("payment_intent"))]
    return respond_list(s, items, params, "/v1/invoice_payments")
